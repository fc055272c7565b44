//! Priority (upstream's admission plugin of that name): a new pod's `priorityClassName` (or the
//! globalDefault class when it names none) becomes `spec.priority` and `spec.preemptionPolicy`;
//! an unknown class or a pod that sets a different priority itself is refused. For
//! PriorityClasses it keeps a single globalDefault and refuses deleting the system classes.
//! Messages are upstream's.

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::kinds::scheduling::priorityclass::SYSTEM_PRIORITY_CLASSES;
use skiff_api::ApiError;
use skiff_store::ListOptions;

use super::noderestriction::forbidden;
use super::{Operation, Plugin, Request};
use crate::keys::{collection_prefix, decode, encode, object_key};
use crate::respond::ApiResult;
use crate::{AppState, ServerError};

pub(crate) struct Priority;

/// Bound on the PriorityClasses read per request (they are few; this only caps a pathological
/// store).
const MAX_CLASSES: i64 = 10_000;

fn classes_info() -> Option<&'static skiff_api::ResourceInfo> {
    skiff_api::resources::by_plural("scheduling.k8s.io", "v1", "priorityclasses")
}

async fn get_class(req: &Request<'_>, name: &str) -> ApiResult<Option<Value>> {
    let info =
        classes_info().ok_or_else(|| ApiError::internal("priorityclasses are not served"))?;
    match req.ctx.st.store.get(&object_key(info, None, name)).await {
        Ok(Some(kv)) => Ok(Some(decode(&kv)?)),
        Ok(None) => Ok(None),
        Err(e) => Err(ApiError::internal(format!(
            "failed to get PriorityClass with name {name}: {e}"
        ))),
    }
}

/// The globalDefault class with the lowest value (upstream's `getDefaultPriorityClass`).
async fn default_class(req: &Request<'_>) -> ApiResult<Option<Value>> {
    let info =
        classes_info().ok_or_else(|| ApiError::internal("priorityclasses are not served"))?;
    let opts = ListOptions {
        limit: MAX_CLASSES,
        ..Default::default()
    };
    let page = req
        .ctx
        .st
        .store
        .list(&collection_prefix(info, None), &opts)
        .await
        .map_err(|e| ApiError::internal(format!("failed to get default priority class: {e}")))?;
    let mut best: Option<Value> = None;
    for kv in &page.items {
        let Ok(pc) = decode(kv) else { continue };
        if pc.get("globalDefault").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let lower = best.as_ref().is_none_or(|b| value_of(&pc) < value_of(b));
        if lower {
            best = Some(pc);
        }
    }
    Ok(best)
}

fn value_of(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[async_trait]
impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        let info = req.ctx.info;
        req.ctx.custom.is_none()
            && req.subresource.is_empty()
            && ((info.group.is_empty() && info.plural == "pods")
                || (info.group == "scheduling.k8s.io" && info.plural == "priorityclasses"))
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        if req.ctx.info.plural != "pods" {
            return Ok(());
        }
        let Some(pod) = obj else { return Ok(()) };
        match req.op {
            Operation::Create => admit_new_pod(req, pod).await,
            Operation::Update => {
                // Priority is set at create and immutable: keep it when an update leaves it out.
                if let Some(old) = req.old {
                    for key in ["priority", "preemptionPolicy"] {
                        let missing = pod.pointer(&format!("/spec/{key}")).is_none();
                        if let (true, Some(v), Some(spec)) = (
                            missing,
                            old.pointer(&format!("/spec/{key}")),
                            pod.get_mut("spec").and_then(Value::as_object_mut),
                        ) {
                            spec.insert(key.into(), v.clone());
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        if req.ctx.info.plural != "priorityclasses" {
            return Ok(Vec::new());
        }
        match req.op {
            Operation::Delete => {
                if SYSTEM_PRIORITY_CLASSES
                    .iter()
                    .any(|(n, _, _)| *n == req.name)
                {
                    return Err(forbidden(
                        req,
                        None,
                        "this is a system priority class and cannot be deleted",
                    ));
                }
            }
            Operation::Create | Operation::Update => {
                let Some(pc) = obj else {
                    return Ok(Vec::new());
                };
                if pc.get("globalDefault").and_then(Value::as_bool) == Some(true) {
                    if let Some(dpc) = default_class(req).await? {
                        let same = req.op == Operation::Update && name_of(&dpc) == name_of(pc);
                        if !same {
                            return Err(forbidden(
                                req,
                                Some(pc),
                                format!(
                                    "PriorityClass {} is marked as default. Only one default can exist",
                                    name_of(&dpc)
                                ),
                            ));
                        }
                    }
                }
            }
            Operation::Connect => {}
        }
        Ok(Vec::new())
    }
}

/// Resolves the class of a pod being created.
async fn admit_new_pod(req: &Request<'_>, pod: &mut Value) -> ApiResult<()> {
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Pod defaulting already wrote priority 0 / PreemptLowerPriority when no class is named;
    // those defaults give way to a globalDefault class (an explicit 0 cannot be told apart).
    let (name, priority, policy, defaulted) = if class_name.is_empty() {
        match default_class(req).await? {
            Some(pc) => (
                name_of(&pc).to_string(),
                value_of(&pc),
                pc.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                true,
            ),
            None => (String::new(), 0, None, true),
        }
    } else {
        match get_class(req, &class_name).await? {
            Some(pc) => (
                class_name.clone(),
                value_of(&pc),
                pc.get("preemptionPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                false,
            ),
            None => {
                return Err(forbidden(
                    req,
                    Some(pod),
                    format!("no PriorityClass with name {class_name} was found"),
                ))
            }
        }
    };
    let given = pod.pointer("/spec/priority").and_then(Value::as_i64);
    if let Some(given) = given {
        if given != priority && !(defaulted && given == 0) {
            return Err(forbidden(
                req,
                Some(pod),
                format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"),
            ));
        }
    }
    let given_policy = pod
        .pointer("/spec/preemptionPolicy")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(want), Some(got)) = (&policy, &given_policy) {
        // PreemptLowerPriority is also what pod defaulting writes: only "Never" is surely the
        // user's own.
        if want != got && got != "PreemptLowerPriority" {
            return Err(forbidden(
                req,
                Some(pod),
                format!("the string value of PreemptionPolicy ({got}) must not be provided in pod spec; priority admission controller computed {want} from the given PriorityClass name"),
            ));
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), Value::String(name));
    }
    spec.insert("priority".into(), Value::from(priority));
    if let Some(p) = policy {
        spec.insert("preemptionPolicy".into(), Value::String(p));
    }
    Ok(())
}

/// Creates the system PriorityClasses when missing (upstream's scheduling REST storage
/// post-start hook).
pub(crate) async fn bootstrap(st: &AppState) -> Result<(), ServerError> {
    let Some(info) = classes_info() else {
        return Ok(());
    };
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let key = object_key(info, None, name);
        if st.store.get(&key).await?.is_some() {
            continue;
        }
        let mut obj = skiff_api::kinds::scheduling::priorityclass::system_priority_class(
            name,
            *value,
            description,
        );
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            meta.insert(
                "creationTimestamp".into(),
                crate::respond::now_rfc3339().into(),
            );
            meta.insert("generation".into(), 1.into());
        }
        match st.store.create(&key, encode(&obj)).await {
            Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
