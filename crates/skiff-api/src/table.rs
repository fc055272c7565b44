//! `meta.k8s.io/v1 Table` responses with the columns kubectl users know for every kind.
//!
//! Columns and cell formatting reproduce kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`), which the server runs with `Wide: true` so
//! priority-1 columns are always present and kubectl hides them unless `-o wide`.

use serde_json::{json, Map, Value};

use crate::selector::LabelSelector;
use crate::ResourceInfo;

/// What each row's `object` carries (`?includeObject=`): PartialObjectMetadata by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One column: (name, type, priority, description).
type Col = (&'static str, &'static str, u8, &'static str);

const NAME: Col = ("Name", "string", 0, NAME_DOC);
const AGE: Col = ("Age", "string", 0, AGE_DOC);

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            ("IP", "string", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            ("Node", "string", 1, "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
            ("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            ("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            ("Up-to-date", "string", 0, "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
            ("Available", "string", 0, "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        "ReplicaSet" => vec![
            NAME,
            ("Desired", "integer", 0, "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works"),
            ("Current", "integer", 0, "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works"),
            ("Ready", "integer", 0, "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "DaemonSet" => vec![
            NAME,
            ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            ("Ready", "integer", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
            ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
            ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", 0, "Status of the job."),
            ("Completions", "string", 0, "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
            ("Duration", "string", 0, "Time required to complete the job."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "CronJob" => vec![
            NAME,
            ("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            ("Timezone", "string", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
            ("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            ("Active", "integer", 0, "A list of pointers to currently running jobs."),
            ("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", 0, "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
            ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
            ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            AGE,
            ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"),
        ],
        "Node" => vec![
            NAME,
            ("Status", "string", 0, "The status of the node"),
            ("Roles", "string", 0, "The roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("External-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
        "ConfigMap" => vec![NAME, ("Data", "string", 0, "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", 0, "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
            ("Data", "string", 0, "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
            AGE,
        ],
        "ServiceAccount" => vec![NAME, ("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
        "Endpoints" => vec![NAME, ("Endpoints", "string", 0, "Endpoints of the service"), AGE],
        "EndpointSlice" => vec![
            NAME,
            ("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type."),
            ("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
            ("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        "Event" => vec![
            ("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
            ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            ("Object", "string", 0, "The object that this event is about."),
            ("Subobject", "string", 1, "The subobject (field path) this event is about."),
            ("Source", "string", 1, "The component reporting this event. Should be a short machine understandable string."),
            ("Message", "string", 0, "A human-readable description of the status of this operation."),
            ("First Seen", "string", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            ("Count", "string", 1, "The number of times this event has occurred."),
            ("Name", "string", 1, NAME_DOC),
        ],
        "Lease" => vec![NAME, ("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."), AGE],
        _ => vec![NAME, AGE],
    }
}

/// A Table of `objects` (full objects of kind `info`). `list_metadata` is the list's
/// metadata (resourceVersion, continue). `now` is the current time (for AGE columns).
pub fn to_table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
    now: jiff::Timestamp,
) -> Value {
    let column_definitions: Vec<Value> = columns(info.kind)
        .into_iter()
        .map(|(name, ty, priority, description)| {
            json!({
                "name": name,
                "type": ty,
                "format": if name == "Name" { "name" } else { "" },
                "description": description,
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(info, obj, now)));
            if info.kind == "Pod" {
                // Upstream marks finished pods so clients can filter them.
                match s(obj, "/status/phase") {
                    "Succeeded" => {
                        row.insert("conditions".into(), json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]));
                    }
                    "Failed" => {
                        row.insert("conditions".into(), json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod has failed."}]));
                    }
                    _ => {}
                }
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}),
                    );
                }
                IncludeObject::Object => {
                    let mut full = obj.clone();
                    if let Value::Object(m) = &mut full {
                        m.entry("kind").or_insert_with(|| json!(info.kind));
                        m.entry("apiVersion")
                            .or_insert_with(|| json!(info.api_version()));
                    }
                    row.insert("object".into(), full);
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata = if list_metadata.is_object() {
        list_metadata
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// String at a JSON pointer ("" when missing or not a string).
fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Integer at a JSON pointer (0 when missing).
fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Array at a JSON pointer (empty when missing).
fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn parse_time(t: &str) -> Option<jiff::Timestamp> {
    t.parse::<jiff::Timestamp>().ok()
}

/// kubectl's `translateTimestampSince`: `<unknown>` for a missing time.
fn since(t: &str, now: jiff::Timestamp) -> String {
    match parse_time(t) {
        Some(ts) => {
            let secs = now.as_second() - ts.as_second();
            human_duration(secs)
        }
        None => "<unknown>".into(),
    }
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration` on whole seconds: `5s`, `3m2s`, `10m`,
/// `5h30m`, `2d3h`, `1y20d`…
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn cells(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = s(obj, "/metadata/name").to_string();
    let age = since(s(obj, "/metadata/creationTimestamp"), now);
    match info.kind {
        "Pod" => pod_cells(obj, now),
        "Deployment" => {
            let (names, images) = container_cells(obj);
            vec![
                json!(name),
                json!(format!(
                    "{}/{}",
                    n(obj, "/status/readyReplicas"),
                    n(obj, "/spec/replicas")
                )),
                json!(n(obj, "/status/updatedReplicas")),
                json!(n(obj, "/status/availableReplicas")),
                json!(age),
                json!(names),
                json!(images),
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        "ReplicaSet" => {
            let (names, images) = container_cells(obj);
            vec![
                json!(name),
                json!(n(obj, "/spec/replicas")),
                json!(n(obj, "/status/replicas")),
                json!(n(obj, "/status/readyReplicas")),
                json!(age),
                json!(names),
                json!(images),
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        // `printDaemonSet`: status counters, the template's node selector.
        "DaemonSet" => {
            let (names, images) = container_cells(obj);
            vec![
                json!(name),
                json!(n(obj, "/status/desiredNumberScheduled")),
                json!(n(obj, "/status/currentNumberScheduled")),
                json!(n(obj, "/status/numberReady")),
                json!(n(obj, "/status/updatedNumberScheduled")),
                json!(n(obj, "/status/numberAvailable")),
                json!(format_labels(
                    obj.pointer("/spec/template/spec/nodeSelector")
                )),
                json!(age),
                json!(names),
                json!(images),
                json!(selector_string(obj.pointer("/spec/selector"))),
            ]
        }
        "Job" => job_cells(obj, name, age, now),
        "CronJob" => cronjob_cells(obj, name, age, now),
        "Service" => {
            let cluster_ip = arr(obj, "/spec/clusterIPs")
                .first()
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| "<none>".into());
            let ports = service_ports(obj);
            vec![
                json!(name),
                json!(s(obj, "/spec/type")),
                json!(cluster_ip),
                json!(service_external_ip(obj)),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports
                }),
                json!(age),
                json!(format_labels(obj.pointer("/spec/selector"))),
            ]
        }
        "Node" => node_cells(obj, name, age),
        "Namespace" => vec![json!(name), json!(s(obj, "/status/phase")), json!(age)],
        "ConfigMap" => {
            let count = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len)
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
            vec![json!(name), json!(count), json!(age)]
        }
        "Secret" => {
            let count = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            vec![
                json!(name),
                json!(s(obj, "/type")),
                json!(count),
                json!(age),
            ]
        }
        "ServiceAccount" => vec![json!(name), json!(arr(obj, "/secrets").len()), json!(age)],
        "Endpoints" => vec![json!(name), json!(format_endpoints(obj)), json!(age)],
        "EndpointSlice" => vec![
            json!(name),
            json!(s(obj, "/addressType")),
            json!(endpointslice_ports(obj)),
            json!(endpointslice_endpoints(obj)),
            json!(age),
        ],
        "Event" => event_cells(obj, &name, now),
        "Lease" => vec![
            json!(name),
            json!(s(obj, "/spec/holderIdentity")),
            json!(age),
        ],
        _ => vec![json!(name), json!(age)],
    }
}

/// `printJob`: status from the conditions, `<succeeded>/<completions>` (`/1 of <parallelism>`
/// for work-queue jobs), and the run time so far or until completion.
fn job_cells(obj: &Value, name: String, age: String, now: jiff::Timestamp) -> Vec<Value> {
    let has = |ty: &str| {
        arr(obj, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = n(obj, "/status/succeeded");
    let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match n(obj, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_time(s(obj, "/status/startTime"));
    let end = parse_time(s(obj, "/status/completionTime"));
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(st), None) => human_duration(now.as_second() - st.as_second()),
        (Some(st), Some(e)) => human_duration(e.as_second() - st.as_second()),
    };
    let (names, images) = container_cells(obj);
    vec![
        json!(name),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}

/// `printCronJob`: the time zone and last schedule read `<none>` when unset, SUSPEND is
/// `printBoolPtr` (`True`/`False`, `<unset>`), ACTIVE counts the running Jobs; the wide
/// columns describe the job template (whose selector is normally unset).
fn cronjob_cells(obj: &Value, name: String, age: String, now: jiff::Timestamp) -> Vec<Value> {
    let time_zone = obj
        .pointer("/spec/timeZone")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = match obj
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
    {
        Some(t) => since(t, now),
        None => "<none>".into(),
    };
    let template = obj.pointer("/spec/jobTemplate").unwrap_or(&Value::Null);
    let (names, images) = container_cells(template);
    vec![
        json!(name),
        json!(s(obj, "/spec/schedule")),
        json!(time_zone),
        json!(suspend),
        json!(arr(obj, "/status/active").len()),
        json!(last),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(template.pointer("/spec/selector"))),
    ]
}

/// Container names and images of a pod template, comma-joined.
fn container_cells(obj: &Value) -> (String, String) {
    let cs = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// A metav1.LabelSelector as `app=web,tier in (a,b)`.
fn selector_string(sel: Option<&Value>) -> String {
    match sel {
        None | Some(Value::Null) => "<none>".into(),
        Some(v) => LabelSelector::from_json(v)
            .map(|l| l.to_string())
            .unwrap_or_else(|_| "<invalid>".into()),
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs or `<none>`.
fn format_labels(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object) else {
        return "<none>".into();
    };
    if m.is_empty() {
        return "<none>".into();
    }
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn service_ports(obj: &Value) -> String {
    arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = n(p, "/port");
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            let node_port = n(p, "/nodePort");
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_external_ip(obj: &Value) -> String {
    let external: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match s(obj, "/spec/type") {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    let ip = s(i, "/ip");
                    let host = s(i, "/hostname");
                    if !ip.is_empty() {
                        Some(ip.to_string())
                    } else if !host.is_empty() {
                        Some(host.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

fn node_cells(obj: &Value, name: String, age: String) -> Vec<Value> {
    let conds = arr(obj, "/status/conditions");
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = conds.iter().find(|c| s(c, "/type") == "Ready") {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(skiff_semantics::wellknown::labels::NODE_ROLE_PREFIX)
            {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == skiff_semantics::wellknown::labels::ROLE {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let or_unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(name),
        json!(status.join(",")),
        json!(roles),
        json!(age),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(s(obj, "/status/nodeInfo/osImage"))),
        json!(or_unknown(s(obj, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(s(
            obj,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

/// Is this init container a sidecar (`restartPolicy: Always`)?
fn restartable_init(obj: &Value, name: &str) -> bool {
    arr(obj, "/spec/initContainers")
        .iter()
        .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
}

/// kubectl's pod printer: READY, STATUS and RESTARTS computed from container statuses.
fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let init_specs = arr(pod, "/spec/initContainers");
    let mut total = arr(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_sidecar_restart: Option<jiff::Timestamp> = None;
    let later = |cur: Option<jiff::Timestamp>, t: Option<jiff::Timestamp>| match (cur, t) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let phase = s(pod, "/status/phase");
    let mut reason = phase.to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let conditions = arr(pod, "/status/conditions");
    if conditions
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let cname = s(c, "/name");
        let count = n(c, "/restartCount");
        restarts += count;
        let finished = parse_time(s(c, "/lastState/terminated/finishedAt"));
        last_restart = later(last_restart, finished);
        let sidecar = restartable_init(pod, cname);
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = s(c, "/state/waiting/reason");
        if terminated.is_some() && n(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some() {
            let r = s(c, "/state/terminated/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if n(c, "/state/terminated/signal") != 0 {
                format!("Init:Signal:{}", n(c, "/state/terminated/signal"))
            } else {
                format!("Init:ExitCode:{}", n(c, "/state/terminated/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += n(c, "/restartCount");
            last_restart = later(
                last_restart,
                parse_time(s(c, "/lastState/terminated/finishedAt")),
            );
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").is_some();
            let term_reason = s(c, "/state/terminated/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated && !term_reason.is_empty() {
                reason = term_reason.to_string();
            } else if terminated {
                let signal = n(c, "/state/terminated/signal");
                reason = if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", n(c, "/state/terminated/exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.as_second() - t.as_second())
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .or(Some(s(pod, "/status/podIP")).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let none_if_empty = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let gates = arr(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| s(c, "/type") == t)
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(since(s(pod, "/metadata/creationTimestamp"), now)),
        json!(pod_ip),
        json!(none_if_empty(s(pod, "/spec/nodeName"))),
        json!(none_if_empty(s(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

/// `formatEndpoints`: up to three `ip:port` entries then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = s(a, "/ip");
                let port = n(p, "/port");
                // net.JoinHostPort brackets IPv6 addresses.
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn list_with_more(list: Vec<String>, more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

fn endpointslice_ports(obj: &Value) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for p in arr(obj, "/ports") {
        if list.len() < max {
            let num = match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_string(),
            };
            list.push(num);
        } else if list.len() == max {
            more = true;
        }
        count += 1;
    }
    list_with_more(list, more, count, max)
}

fn endpointslice_endpoints(obj: &Value) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in arr(obj, "/endpoints") {
        for a in arr(e, "/addresses") {
            if list.len() < max {
                list.push(a.as_str().unwrap_or("").to_string());
            } else if list.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more(list, more, count, max)
}

/// Core and events.k8s.io Events share the printer; the latter's fields are mapped first.
fn event_cells(obj: &Value, name: &str, now: jiff::Timestamp) -> Vec<Value> {
    let new_api = obj.get("regarding").is_some() || obj.get("note").is_some();
    let (involved, message, first, last, mut count, source_component, source_host) = if new_api {
        (
            obj.get("regarding").cloned().unwrap_or(Value::Null),
            s(obj, "/note"),
            s(obj, "/deprecatedFirstTimestamp"),
            s(obj, "/deprecatedLastTimestamp"),
            n(obj, "/deprecatedCount"),
            s(obj, "/deprecatedSource/component"),
            s(obj, "/deprecatedSource/host"),
        )
    } else {
        (
            obj.get("involvedObject").cloned().unwrap_or(Value::Null),
            s(obj, "/message"),
            s(obj, "/firstTimestamp"),
            s(obj, "/lastTimestamp"),
            n(obj, "/count"),
            s(obj, "/source/component"),
            s(obj, "/source/host"),
        )
    };
    let first_seen = if parse_time(first).is_some() {
        since(first, now)
    } else {
        since(s(obj, "/eventTime"), now)
    };
    let mut last_seen = if parse_time(last).is_some() {
        since(last, now)
    } else {
        first_seen.clone()
    };
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last_seen = since(s(series, "/lastObservedTime"), now);
        count = n(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(&involved, "/kind").to_lowercase();
    let iname = s(&involved, "/name");
    let target = if iname.is_empty() {
        kind
    } else {
        format!("{kind}/{iname}")
    };
    let component = if source_component.is_empty() {
        s(obj, "/reportingController")
    } else {
        source_component
    };
    let instance = if source_host.is_empty() {
        s(obj, "/reportingInstance")
    } else {
        source_host
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(&involved, "/fieldPath")),
        json!(source),
        json!(message.trim()),
        json!(first_seen),
        json!(count),
        json!(name),
    ]
}
