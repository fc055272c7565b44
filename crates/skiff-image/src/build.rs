//! `Containerfile` builds.
//!
//! Every instruction after FROM is one step whose result (config, history entry and optional
//! layer) is cached in `root/cache/<key>.json`, keyed by sha256(parent state digest,
//! instruction text after substitution, digest of the content it reads). History timestamps
//! come from the cache too, so an unchanged rebuild yields the same image ID, writes no blobs
//! and runs nothing.
//!
//! Layers: COPY/ADD layers are written directly from the context (sorted entries, source
//! mtimes, owner 0:0 unless `--chown`); RUN layers are the overlay upper dir of the runner,
//! converted to OCI whiteouts. WORKDIR only changes the config (no layer): the runtime creates
//! a missing working directory when a container starts. Parent directories of copied paths get
//! their metadata from the layers below, so e.g. `/tmp` keeps mode 1777.
//!
//! Blobs and snapshots of steps that succeeded stay (as build cache) even if a later step
//! fails; nothing is tagged unless the whole build succeeds.
//!
//! Not supported (Build error): multi-stage builds, `COPY --from`, RUN flags (`--mount`,
//! ...), here-documents, remote ADD, SHELL, HEALTHCHECK, ONBUILD.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{
    Arch, Config, Descriptor, History, HistoryBuilder, ImageConfigurationBuilder, MediaType, Os,
    RootFsBuilder,
};
use parse_dockerfile::{Command, Instruction, Source};
use sha2::{Digest as _, Sha256};

use crate::archive::store_image;
use crate::layer::{add_upper_dir, LayerWriter, Meta};
use crate::reference::Reference;
use crate::store::{parse_digest, Txn};
use crate::unpack::{detect, is_whiteout, Compression, OPAQUE_XATTR};
use crate::util::{canonical_json, now_rfc3339, sha256_digest, short, IoCtx};
use crate::{
    BuildOptions, BuildResult, BuildRunner, ImageError, ImageStore, Progress, Result, RunStep,
};

/// The image being built, after some steps.
#[derive(Clone)]
struct State {
    config: Config,
    history: Vec<History>,
    layers: Vec<(Descriptor, String)>,
    architecture: Arch,
    os: Os,
    author: Option<String>,
    created: Option<String>,
}

impl State {
    fn digest(&self) -> Result<String> {
        let layers: Vec<(String, &String)> = self
            .layers
            .iter()
            .map(|(d, id)| (d.digest().to_string(), id))
            .collect();
        let v = serde_json::json!({
            "config": self.config,
            "history": self.history,
            "layers": layers,
            "arch": self.architecture.to_string(),
            "os": self.os.to_string(),
        });
        Ok(sha256_digest(&canonical_json(&v)?))
    }
}

/// What one step did; stored in the build cache.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepResult {
    config: Config,
    history: History,
    layer: Option<(Descriptor, String)>,
}

/// A layer produced by COPY/ADD/RUN, not yet stored.
struct NewLayer {
    blob: crate::layer::LayerBlob,
}

struct Ctx<'a> {
    store: &'a ImageStore,
    file_name: String,
    context: PathBuf,
    progress: &'a dyn Progress,
    runner: &'a dyn BuildRunner,
    build_args: BTreeMap<String, String>,
    /// ARG values in scope (after FROM).
    args: BTreeMap<String, String>,
    no_cache: bool,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Ctx<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> ImageError {
        ImageError::Build {
            file: self.file_name.clone(),
            line,
            message: message.into(),
        }
    }

    /// Variables for substitution: ARGs overridden by ENV (as docker does).
    fn vars(&self, state: &State) -> BTreeMap<String, String> {
        let mut v = self.args.clone();
        for e in state.config.env().clone().unwrap_or_default() {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn lowers(&self, state: &State) -> Result<Vec<PathBuf>> {
        state
            .layers
            .iter()
            .map(|(d, id)| {
                self.store
                    .ensure_snapshot(d.digest().as_ref(), id, self.progress)
            })
            .collect()
    }
}

fn keyword_span(i: &Instruction<'_>) -> Option<usize> {
    Some(match i {
        Instruction::Add(x) => x.add.span.start,
        Instruction::Arg(x) => x.arg.span.start,
        Instruction::Cmd(x) => x.cmd.span.start,
        Instruction::Copy(x) => x.copy.span.start,
        Instruction::Entrypoint(x) => x.entrypoint.span.start,
        Instruction::Env(x) => x.env.span.start,
        Instruction::Expose(x) => x.expose.span.start,
        Instruction::From(x) => x.from.span.start,
        Instruction::Healthcheck(x) => x.healthcheck.span.start,
        Instruction::Label(x) => x.label.span.start,
        Instruction::Maintainer(x) => x.maintainer.span.start,
        Instruction::Onbuild(x) => x.onbuild.span.start,
        Instruction::Run(x) => x.run.span.start,
        Instruction::Shell(x) => x.shell.span.start,
        Instruction::Stopsignal(x) => x.stopsignal.span.start,
        Instruction::User(x) => x.user.span.start,
        Instruction::Volume(x) => x.volume.span.start,
        Instruction::Workdir(x) => x.workdir.span.start,
        _ => return None,
    })
}

/// The source text of an instruction, continuation lines joined, for progress output.
fn source_text(text: &str, start: usize, end: usize) -> String {
    let raw = &text[start.min(text.len())..end.min(text.len())];
    let mut out = String::new();
    for line in raw.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let l = l.strip_suffix('\\').unwrap_or(l).trim();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(l);
    }
    out
}

pub(crate) fn build(
    store: &ImageStore,
    opts: &BuildOptions,
    runner: &dyn BuildRunner,
    progress: &dyn Progress,
) -> Result<BuildResult> {
    let tag = Reference::parse(&opts.tag)?;
    if tag.digest.is_some() {
        return Err(ImageError::InvalidReference(
            opts.tag.clone(),
            "a build names its image by tag, not by digest".into(),
        ));
    }
    let file = match &opts.file {
        Some(f) => f.clone(),
        None => {
            let c = opts.context.join("Containerfile");
            if c.exists() {
                c
            } else {
                opts.context.join("Dockerfile")
            }
        }
    };
    let file_name = file.display().to_string();
    let text = fs::read_to_string(&file).ctx(|| format!("reading {file_name}"))?;
    let context = fs::canonicalize(&opts.context)
        .ctx(|| format!("build context {}", opts.context.display()))?;
    let df = parse_dockerfile::parse(&text).map_err(|e| ImageError::Build {
        file: file_name.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let mut ctx = Ctx {
        store,
        file_name,
        context,
        progress,
        runner,
        build_args: opts.build_args.iter().cloned().collect(),
        args: BTreeMap::new(),
        no_cache: opts.no_cache,
    };

    // Global ARGs (before FROM) are usable in FROM.
    let mut global = BTreeMap::new();
    for a in df.global_args() {
        let (k, v) = parse_arg(&a.arguments.value, &global);
        let v = ctx.build_args.get(&k).cloned().or(v).unwrap_or_default();
        global.insert(k, v);
    }
    let stages: Vec<_> = df.stages().collect();
    if stages.len() != 1 {
        let line = stages
            .get(1)
            .map(|s| line_of(&text, s.from.from.span.start))
            .unwrap_or(1);
        return Err(ctx.err(line, "multi-stage builds are not supported"));
    }
    let stage = &stages[0];

    // Instruction end offsets: the start of the next one.
    let starts: Vec<usize> = df.instructions.iter().filter_map(keyword_span).collect();
    let end_of = |start: usize| {
        starts
            .iter()
            .copied()
            .find(|s| *s > start)
            .unwrap_or(text.len())
    };

    let total = stage.instructions.len() + 1;
    let from_start = stage.from.from.span.start;
    let from_line = line_of(&text, from_start);
    progress.message(&format!(
        "STEP 1/{total}: {}",
        source_text(&text, from_start, end_of(from_start))
    ));
    let image_ref = expand_one(&stage.from.image.value, &global);
    let mut state = if image_ref == "scratch" {
        State {
            config: Config::default(),
            history: Vec::new(),
            layers: Vec::new(),
            architecture: Arch::Amd64,
            os: Os::Linux,
            author: None,
            created: None,
        }
    } else {
        let img = store
            .find_image(&image_ref)
            .map_err(|e| ctx.err(from_line, format!("FROM {image_ref}: {e}")))?;
        let layers = img
            .layers()?
            .into_iter()
            .zip(img.manifest.layers())
            .map(|((_, id), d)| (d.clone(), id))
            .collect();
        State {
            config: img.config.config().clone().unwrap_or_default(),
            history: img.config.history().clone().unwrap_or_default(),
            layers,
            architecture: img.config.architecture().clone(),
            os: img.config.os().clone(),
            author: img.config.author().clone(),
            created: img.config.created().clone(),
        }
    };
    // Global ARGs declared again inside the stage get their values.
    let (mut cached, mut executed) = (0, 0);
    let mut cmd_from_stage = false;
    let mut txn = Txn::new(store);
    for (n, ins) in stage.instructions.iter().enumerate() {
        let start = keyword_span(ins).unwrap_or(0);
        let line = line_of(&text, start);
        progress.message(&format!(
            "STEP {}/{total}: {}",
            n + 2,
            source_text(&text, start, end_of(start))
        ));
        let vars = ctx.vars(&state);
        if let Instruction::Arg(a) = ins {
            let (k, default) = parse_arg(&a.arguments.value, &vars);
            let v = ctx
                .build_args
                .get(&k)
                .cloned()
                .or(default)
                .or_else(|| global.get(&k).cloned())
                .unwrap_or_default();
            ctx.args.insert(k, v);
        }
        if let Instruction::Cmd(_) = ins {
            cmd_from_stage = true;
        }
        let plan = plan_step(&ctx, &state, ins, line, &vars, cmd_from_stage)?;
        let parent = state.digest()?;
        let key = {
            let mut h = Sha256::new();
            h.update(parent.as_bytes());
            h.update(b"\n");
            h.update(plan.key_text.as_bytes());
            h.update(b"\n");
            h.update(plan.content.as_bytes());
            hex::encode(h.finalize())
        };
        let cache_path = store.root().join("cache").join(format!("{key}.json"));
        let hit = if ctx.no_cache {
            None
        } else {
            load_cache(store, &cache_path)
        };
        let from_cache = hit.is_some();
        let result = match hit {
            Some(r) => {
                cached += 1;
                r
            }
            None => {
                executed += 1;
                let r = execute(&ctx, &state, plan, line, &mut txn)?;
                let bytes = canonical_json(&r)?;
                crate::util::atomic_write(&store.tmp_dir(), &cache_path, &bytes)?;
                r
            }
        };
        state.config = result.config;
        state.created = result.history.created().clone();
        state.history.push(result.history);
        if let Some(l) = result.layer {
            state.layers.push(l);
        }
        if from_cache {
            progress.message(&format!("--> Using cache {}", short(&state.digest()?)));
        } else {
            progress.message(&format!("--> {}", short(&state.digest()?)));
        }
    }
    // Make sure every layer is unpacked (cache hits may point at never-unpacked layers).
    ctx.lowers(&state)?;
    let config = ImageConfigurationBuilder::default()
        .architecture(state.architecture.clone())
        .os(state.os.clone())
        .config(state.config.clone())
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    state
                        .layers
                        .iter()
                        .map(|(_, id)| id.clone())
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(|e| ImageError::Other(format!("building rootfs: {e}")))?,
        )
        .history(state.history.clone())
        .build()
        .map_err(|e| ImageError::Other(format!("building image config: {e}")))?;
    let mut config = config;
    config.set_created(state.created.clone());
    config.set_author(state.author.clone());
    let desc = store_image(
        &mut txn,
        &config,
        state.layers.iter().map(|(d, _)| d.clone()).collect(),
    )?;
    store.set_tags(&[(tag.clone(), desc.clone())])?;
    txn.commit();
    let image = store.summary(&store.load_image(&tag, &desc)?);
    progress.message(&format!("Successfully tagged {tag} ({})", short(&image.id)));
    Ok(BuildResult {
        image,
        cached_steps: cached,
        executed_steps: executed,
    })
}

fn load_cache(store: &ImageStore, path: &Path) -> Option<StepResult> {
    let bytes = fs::read(path).ok()?;
    let r: StepResult = serde_json::from_slice(&bytes).ok()?;
    // A removed image may have taken the layer blob with it: then it is a miss.
    if let Some((d, _)) = &r.layer {
        if !store.has_blob(d.digest().as_ref()) {
            return None;
        }
    }
    Some(r)
}

/// A step prepared (arguments substituted, content hashed) but not run.
struct Plan {
    key_text: String,
    content: String,
    created_by: String,
    config: Config,
    action: Action,
}

enum Action {
    ConfigOnly,
    /// Entries to write into a new layer.
    Files(Vec<Item>),
    Run {
        args: Vec<String>,
        env: Vec<String>,
    },
}

/// One entry of a COPY/ADD layer.
enum Item {
    Dir {
        dest: PathBuf,
        meta: Meta,
    },
    File {
        dest: PathBuf,
        src: PathBuf,
        meta: Meta,
        size: u64,
    },
    Symlink {
        dest: PathBuf,
        target: PathBuf,
        meta: Meta,
    },
    /// A local tar archive extracted below `dest` (ADD).
    Archive {
        dest: PathBuf,
        src: PathBuf,
        chown: Option<(u64, u64)>,
    },
}

fn cmd_args(c: &Command<'_>) -> Vec<String> {
    match c {
        Command::Exec(v) => v.value.iter().map(|s| s.value.to_string()).collect(),
        Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.value.trim().to_string()],
        _ => Vec::new(),
    }
}

fn nop(s: &str) -> String {
    format!("/bin/sh -c #(nop) {s}")
}

fn set_env(config: &mut Config, key: &str, value: &str) {
    let mut env = config.env().clone().unwrap_or_default();
    let prefix = format!("{key}=");
    env.retain(|e| !e.starts_with(&prefix) && e != key);
    env.push(format!("{key}={value}"));
    config.set_env(Some(env));
}

fn plan_step(
    ctx: &Ctx<'_>,
    state: &State,
    ins: &Instruction<'_>,
    line: usize,
    vars: &BTreeMap<String, String>,
    cmd_from_stage: bool,
) -> Result<Plan> {
    let mut config = state.config.clone();
    let simple = |key_text: String, config: Config| Plan {
        created_by: nop(&key_text),
        key_text,
        content: String::new(),
        config,
        action: Action::ConfigOnly,
    };
    Ok(match ins {
        Instruction::Env(e) => {
            let pairs =
                parse_pairs(&e.arguments.value, vars, true).map_err(|m| ctx.err(line, m))?;
            let mut text = Vec::new();
            for (k, v) in &pairs {
                set_env(&mut config, k, v);
                text.push(format!("{k}={v}"));
            }
            simple(format!("ENV {}", text.join(" ")), config)
        }
        Instruction::Label(l) => {
            let pairs =
                parse_pairs(&l.arguments.value, vars, false).map_err(|m| ctx.err(line, m))?;
            let mut labels = config.labels().clone().unwrap_or_default();
            let mut text = Vec::new();
            for (k, v) in pairs {
                text.push(format!("{k}={v}"));
                labels.insert(k, v);
            }
            config.set_labels(Some(labels));
            simple(format!("LABEL {}", text.join(" ")), config)
        }
        Instruction::Arg(a) => {
            let (k, _) = parse_arg(&a.arguments.value, vars);
            // The value is part of the key so that --build-arg changes invalidate what follows.
            let v = ctx.args.get(&k).cloned().unwrap_or_default();
            let mut p = simple(format!("ARG {k}"), config);
            p.content = format!("{k}={v}");
            p
        }
        Instruction::Cmd(c) => {
            let args = cmd_args(&c.arguments);
            config.set_cmd(Some(args.clone()));
            simple(
                format!("CMD {}", serde_json::to_string(&args).unwrap_or_default()),
                config,
            )
        }
        Instruction::Entrypoint(c) => {
            let args = cmd_args(&c.arguments);
            config.set_entrypoint(Some(args.clone()));
            if !cmd_from_stage {
                // Like docker: a new ENTRYPOINT drops the CMD inherited from the base image.
                config.set_cmd(None);
            }
            simple(
                format!(
                    "ENTRYPOINT {}",
                    serde_json::to_string(&args).unwrap_or_default()
                ),
                config,
            )
        }
        Instruction::Expose(e) => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            let mut text = Vec::new();
            for p in &e.arguments {
                for word in expand_one(&p.value, vars).split_whitespace() {
                    let port = if word.contains('/') {
                        word.to_string()
                    } else {
                        format!("{word}/tcp")
                    };
                    let num = port.split('/').next().unwrap_or("");
                    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                        return Err(ctx.err(line, format!("invalid port {word:?}")));
                    }
                    if !ports.contains(&port) {
                        ports.push(port.clone());
                    }
                    text.push(port);
                }
            }
            ports.sort();
            config.set_exposed_ports(Some(ports));
            simple(format!("EXPOSE {}", text.join(" ")), config)
        }
        Instruction::User(u) => {
            let user = expand_one(&u.arguments.value, vars);
            config.set_user(Some(user.clone()));
            simple(format!("USER {user}"), config)
        }
        Instruction::Stopsignal(s) => {
            let sig = expand_one(&s.arguments.value, vars);
            config.set_stop_signal(Some(sig.clone()));
            simple(format!("STOPSIGNAL {sig}"), config)
        }
        Instruction::Maintainer(m) => simple(format!("MAINTAINER {}", m.name.value), config),
        Instruction::Volume(v) => {
            let list: Vec<String> = match &v.arguments {
                parse_dockerfile::JsonOrStringArray::Json(a) => {
                    a.value.iter().map(|s| expand_one(&s.value, vars)).collect()
                }
                parse_dockerfile::JsonOrStringArray::String(a) => {
                    a.iter().map(|s| expand_one(&s.value, vars)).collect()
                }
            };
            let mut vols = config.volumes().clone().unwrap_or_default();
            for p in &list {
                if !vols.contains(p) {
                    vols.push(p.clone());
                }
            }
            vols.sort();
            config.set_volumes(Some(vols));
            simple(
                format!(
                    "VOLUME {}",
                    serde_json::to_string(&list).unwrap_or_default()
                ),
                config,
            )
        }
        Instruction::Workdir(w) => {
            let raw = expand_one(&w.arguments.value, vars);
            let cur = config.working_dir().clone().unwrap_or_else(|| "/".into());
            let abs = clean_abs(&Path::new(&cur).join(&raw));
            config.set_working_dir(Some(abs.clone()));
            simple(format!("WORKDIR {abs}"), config)
        }
        Instruction::Copy(c) => {
            let flags = flag_pairs(&c.options);
            plan_copy(
                ctx,
                state,
                "COPY",
                &flags,
                &c.src,
                &c.dest.value,
                line,
                vars,
                config,
            )?
        }
        Instruction::Add(c) => {
            let flags = flag_pairs(&c.options);
            plan_copy(
                ctx,
                state,
                "ADD",
                &flags,
                &c.src,
                &c.dest.value,
                line,
                vars,
                config,
            )?
        }
        Instruction::Run(r) => {
            if let Some(f) = r.options.first() {
                return Err(ctx.err(line, format!("RUN --{} is not supported", f.name.value)));
            }
            if !r.here_docs.is_empty() {
                return Err(ctx.err(line, "here-documents are not supported"));
            }
            let args = cmd_args(&r.arguments);
            let mut env: Vec<String> = Vec::new();
            // ARG values are visible to RUN (but not stored in the config), ENV wins.
            let cenv = config.env().clone().unwrap_or_default();
            for (k, v) in &ctx.args {
                if !cenv.iter().any(|e| e.starts_with(&format!("{k}="))) {
                    env.push(format!("{k}={v}"));
                }
            }
            env.extend(cenv.iter().cloned());
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.push(crate::archive::DEFAULT_PATH.to_string());
            }
            let shown = match &r.arguments {
                Command::Exec(_) => serde_json::to_string(&args).unwrap_or_default(),
                _ => args.join(" "),
            };
            Plan {
                key_text: format!("RUN {shown}"),
                content: format!(
                    "env={:?} user={:?} workdir={:?}",
                    env,
                    config.user(),
                    config.working_dir()
                ),
                created_by: format!("RUN {shown}"),
                config,
                action: Action::Run { args, env },
            }
        }
        Instruction::From(_) => return Err(ctx.err(line, "multi-stage builds are not supported")),
        Instruction::Shell(_) => return Err(ctx.err(line, "SHELL is not supported")),
        Instruction::Healthcheck(_) => return Err(ctx.err(line, "HEALTHCHECK is not supported")),
        Instruction::Onbuild(_) => return Err(ctx.err(line, "ONBUILD is not supported")),
        _ => return Err(ctx.err(line, "unsupported instruction")),
    })
}

/// `--name=value` flags of COPY/ADD as owned pairs.
fn flag_pairs(options: &[parse_dockerfile::Flag<'_>]) -> Vec<(String, Option<String>)> {
    options
        .iter()
        .map(|f| {
            (
                f.name.value.to_string(),
                f.value.as_ref().map(|v| v.value.to_string()),
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn plan_copy(
    ctx: &Ctx<'_>,
    state: &State,
    kw: &str,
    flags: &[(String, Option<String>)],
    srcs: &[Source<'_>],
    dest: &str,
    line: usize,
    vars: &BTreeMap<String, String>,
    config: Config,
) -> Result<Plan> {
    let mut chown = None;
    let mut chmod = None;
    for (name, value) in flags {
        let v = value
            .as_deref()
            .map(|v| expand_one(v, vars))
            .unwrap_or_default();
        match name.as_str() {
            "chown" => {
                let (u, g) = v.split_once(':').unwrap_or((&v, &v));
                match (u.parse::<u64>(), g.parse::<u64>()) {
                    (Ok(u), Ok(g)) => chown = Some((u, g)),
                    _ => {
                        return Err(ctx.err(
                            line,
                            format!("--chown={v}: only numeric uid[:gid] is supported"),
                        ))
                    }
                }
            }
            "chmod" => match u32::from_str_radix(&v, 8) {
                Ok(m) if m <= 0o7777 => chmod = Some(m),
                _ => return Err(ctx.err(line, format!("--chmod={v}: expected an octal mode"))),
            },
            "from" => {
                return Err(ctx.err(
                    line,
                    format!("{kw} --from is not supported (multi-stage builds are not supported)"),
                ))
            }
            other => return Err(ctx.err(line, format!("{kw} --{other} is not supported"))),
        }
    }
    let lowers = ctx.lowers(state)?;
    let workdir = config.working_dir().clone().unwrap_or_else(|| "/".into());
    let dest_raw = expand_one(dest, vars);
    let dest_abs = clean_abs(&Path::new(&workdir).join(&dest_raw));
    let mut sources = Vec::new();
    for s in srcs {
        match s {
            Source::Path(p) => {
                let p = expand_one(&p.value, vars);
                if p.contains("://") {
                    if kw == "ADD" {
                        return Err(ctx.err(line, format!("remote ADD is not supported: {p}")));
                    }
                    return Err(ctx.err(line, format!("COPY does not accept URLs: {p}")));
                }
                let matched = expand_source(&ctx.context, &p).map_err(|m| ctx.err(line, m))?;
                if matched.is_empty() {
                    return Err(ctx.err(
                        line,
                        format!("{kw} source {p:?} not found in the build context"),
                    ));
                }
                sources.extend(matched);
            }
            _ => return Err(ctx.err(line, "here-documents are not supported")),
        }
    }
    let dest_is_dir_hint = dest_raw.ends_with('/') || sources.len() > 1;
    let resolved_full = resolve_in_lowers(&lowers, Path::new(&dest_abs));
    let dest_exists_dir = lower_lookup(&lowers, &resolved_full).is_some_and(|(m, _)| m.is_dir());
    let dest_is_dir = dest_is_dir_hint || dest_exists_dir;
    let dest_rel = if dest_is_dir {
        resolved_full
    } else {
        let parent = Path::new(&dest_abs).parent().unwrap_or(Path::new("/"));
        let base = Path::new(&dest_abs)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        resolve_in_lowers(&lowers, parent).join(base)
    };

    let mut items = Vec::new();
    // Parent dirs with the metadata they have below (e.g. /tmp stays 1777).
    let anchor = if dest_is_dir {
        dest_rel.join("x")
    } else {
        dest_rel.clone()
    };
    parent_dirs(
        &lowers,
        &anchor,
        chown,
        &mut items,
        dest_is_dir && !dest_exists_dir,
    );
    let mut hasher = Sha256::new();
    let mut all_single_file = sources.len() == 1;
    for src in &sources {
        let full = ctx.context.join(src);
        let m = fs::symlink_metadata(&full).ctx(|| format!("{kw} source {}", full.display()))?;
        let name = src.file_name().map(PathBuf::from).unwrap_or_default();
        let is_archive = kw == "ADD" && m.is_file() && looks_like_tar(&full);
        if m.is_dir() {
            all_single_file = false;
            walk_context(&ctx.context, &full, &dest_rel, chown, chmod, &mut items)?;
        } else if is_archive {
            all_single_file = false;
            // Archives always extract into dest as a directory.
            items.push(Item::Archive {
                dest: dest_rel.clone(),
                src: full.clone(),
                chown,
            });
        } else {
            let target = if dest_is_dir {
                dest_rel.join(&name)
            } else {
                dest_rel.clone()
            };
            items.push(item_for(&full, &m, target, chown, chmod)?);
        }
    }
    for it in &items {
        hash_item(&ctx.context, &mut hasher, it)?;
    }
    let content = hex::encode(hasher.finalize());
    let kind = if all_single_file { "file" } else { "dir" };
    let shown_srcs: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
    Ok(Plan {
        key_text: format!(
            "{kw} {:?} {dest_abs} chown={chown:?} chmod={chmod:?}",
            shown_srcs
        ),
        created_by: nop(&format!("{kw} {kind}:{content} in {dest_abs}")),
        content,
        config,
        action: Action::Files(items),
    })
}

fn looks_like_tar(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn item_for(
    full: &Path,
    m: &fs::Metadata,
    dest: PathBuf,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Item> {
    let mut meta = Meta::from_fs(m);
    let (uid, gid) = chown.unwrap_or((0, 0));
    meta.uid = uid;
    meta.gid = gid;
    if let Some(mode) = chmod {
        meta.mode = mode;
    }
    Ok(if m.file_type().is_symlink() {
        Item::Symlink {
            target: fs::read_link(full).ctx(|| format!("reading link {}", full.display()))?,
            dest,
            meta,
        }
    } else if m.is_dir() {
        Item::Dir { dest, meta }
    } else {
        Item::File {
            dest,
            src: full.to_path_buf(),
            meta,
            size: m.len(),
        }
    })
}

fn walk_context(
    root: &Path,
    dir: &Path,
    dest: &Path,
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    items: &mut Vec<Item>,
) -> Result<()> {
    // The directory must still be below the context with no symlink on the way.
    crate::beneath::check_dir(root, dir).ctx(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<OsString> = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("reading {}", dir.display()))? {
        names.push(e.ctx(|| format!("reading {}", dir.display()))?.file_name());
    }
    names.sort();
    for n in names {
        let full = dir.join(&n);
        let m = fs::symlink_metadata(&full).ctx(|| format!("inspecting {}", full.display()))?;
        let ft = m.file_type();
        if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            continue; // sockets, fifos, devices are not copied
        }
        let target = dest.join(&n);
        items.push(item_for(&full, &m, target.clone(), chown, chmod)?);
        if ft.is_dir() {
            walk_context(root, &full, &target, chown, chmod, items)?;
        }
    }
    Ok(())
}

/// Digest of a context file, read through [`crate::beneath`].
fn hash_context_file(root: &Path, src: &Path) -> Result<String> {
    let f = crate::beneath::open_file(root, src).ctx(|| format!("opening {}", src.display()))?;
    let (d, _) = crate::util::HashReader::new(f)
        .finish()
        .ctx(|| format!("reading {}", src.display()))?;
    Ok(d)
}

fn hash_item(root: &Path, h: &mut Sha256, it: &Item) -> Result<()> {
    let meta_text = |m: &Meta| format!("{:o} {} {}", m.mode, m.uid, m.gid);
    match it {
        Item::Dir { dest, meta } => h.update(format!("D {} {}\n", dest.display(), meta_text(meta))),
        Item::Symlink { dest, target, meta } => h.update(format!(
            "L {} {} {}\n",
            dest.display(),
            target.display(),
            meta_text(meta)
        )),
        Item::File {
            dest, src, meta, ..
        } => {
            let d = hash_context_file(root, src)?;
            h.update(format!("F {} {} {d}\n", dest.display(), meta_text(meta)));
        }
        Item::Archive { dest, src, chown } => {
            let d = hash_context_file(root, src)?;
            h.update(format!("A {} {chown:?} {d}\n", dest.display()));
        }
    }
    Ok(())
}

/// Directory entries for the parents of `rel` (and `rel`'s parent itself), with the metadata
/// they have in the layers below; missing ones are 0755 root (or the --chown owner).
fn parent_dirs(
    lowers: &[PathBuf],
    rel: &Path,
    chown: Option<(u64, u64)>,
    items: &mut Vec<Item>,
    include_self: bool,
) {
    let mut cur = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    let upto = if include_self {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    for c in &comps[..upto] {
        cur.push(c);
        let meta = match lower_lookup(lowers, &cur) {
            Some((m, _)) if m.is_dir() => Meta::from_fs(&m),
            _ => {
                let (uid, gid) = chown.unwrap_or((0, 0));
                Meta {
                    mode: 0o755,
                    uid,
                    gid,
                    mtime: now_secs(),
                }
            }
        };
        items.push(Item::Dir {
            dest: cur.clone(),
            meta,
        });
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Looks `rel` up in the merged view of `lowers` (top layer first) without following
/// symlinks; honours whiteouts and opaque directories.
fn lower_lookup(lowers: &[PathBuf], rel: &Path) -> Option<(fs::Metadata, PathBuf)> {
    let comps: Vec<_> = rel.components().collect();
    if comps.is_empty() {
        let top = lowers.last()?;
        return fs::symlink_metadata(top).ok().map(|m| (m, top.clone()));
    }
    for lower in lowers.iter().rev() {
        let mut cur = lower.clone();
        let mut opaque = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Err(_) => break,
                Ok(m) if is_whiteout(&m) => return None,
                Ok(m) if i + 1 == comps.len() => return Some((m, cur)),
                Ok(m) if !m.is_dir() => return None,
                Ok(_) => {
                    if xattr::get(&cur, OPAQUE_XATTR).ok().flatten().as_deref() == Some(b"y") {
                        opaque = true;
                    }
                }
            }
        }
        if opaque {
            return None;
        }
    }
    None
}

/// Resolves symlinks of an absolute in-image path against the merged lowers, like the kernel
/// would inside the container root; returns a root-relative path.
fn resolve_in_lowers(lowers: &[PathBuf], abs: &Path) -> PathBuf {
    let mut todo: VecDeque<OsString> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let cand = cur.join(&c);
        match lower_lookup(lowers, &cand) {
            Some((m, host)) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                let Ok(target) = fs::read_link(&host) else {
                    cur = cand;
                    continue;
                };
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let mut front: Vec<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some(OsString::from("..")),
                        _ => None,
                    })
                    .collect();
                while let Some(x) = front.pop() {
                    todo.push_front(x);
                }
            }
            _ => cur = cand,
        }
    }
    cur
}

/// Lexically cleans an absolute path ("/a/./b/../c" -> "/a/c").
fn clean_abs(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// Context-relative paths a COPY source names (wildcards per component, see [`wildcard`]);
/// refuses sources outside the context.
fn expand_source(context: &Path, src: &str) -> std::result::Result<Vec<PathBuf>, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir if parts.pop().is_none() => {
                return Err(format!("source {src:?} is outside the build context"));
            }
            _ => {}
        }
    }
    let through_link =
        |p: &Path| format!("source {src:?} goes through a symlink ({})", p.display());
    let mut found = vec![PathBuf::new()];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for base in &found {
            // Every candidate is checked the same way whether it was named or matched by a
            // wildcard: a symlink is only ever the last component (copied as a link).
            let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
            if let Some(pattern) = wildcard(part) {
                let Ok(rd) = fs::read_dir(context.join(base)) else {
                    continue;
                };
                for e in rd.filter_map(|e| e.ok()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if matches(&pattern, &name) {
                        // DirEntry::file_type does not follow symlinks.
                        let link = e.file_type().is_ok_and(|t| t.is_symlink());
                        candidates.push((base.join(name), link));
                    }
                }
                candidates.sort();
            } else {
                let p = base.join(part);
                match fs::symlink_metadata(context.join(&p)) {
                    Ok(m) => candidates.push((p, m.file_type().is_symlink())),
                    Err(_) => continue,
                }
            }
            for (p, link) in candidates {
                if link && !last {
                    return Err(through_link(&p));
                }
                next.push(p);
            }
        }
        found = next;
    }
    if parts.is_empty() {
        return Ok(vec![PathBuf::new()]);
    }
    // Resolved again beneath the context root with no symlink followed: what was listed
    // above by path is exactly what will be read.
    for p in &found {
        crate::beneath::check(context, p).map_err(|_| through_link(p))?;
    }
    Ok(found)
}

/// A path component as a COPY wildcard (`*`, `?`, `[class]`, as Go's `filepath.Match` that
/// docker uses), or `None` for a plain name (including one that is no valid pattern).
fn wildcard(part: &str) -> Option<glob::Pattern> {
    if !part.contains(['*', '?', '[']) {
        return None;
    }
    glob::Pattern::new(part).ok()
}

/// Whether a directory entry's name matches a component's pattern (dot files included).
fn matches(pattern: &glob::Pattern, name: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    pattern.matches_with(name, opts)
}

fn execute(
    ctx: &Ctx<'_>,
    state: &State,
    plan: Plan,
    line: usize,
    txn: &mut Txn<'_>,
) -> Result<StepResult> {
    let history = |empty: bool| {
        let mut b = HistoryBuilder::default()
            .created(now_rfc3339())
            .created_by(plan.created_by.clone());
        if empty {
            b = b.empty_layer(true);
        }
        b.build()
            .map_err(|e| ImageError::Other(format!("building history: {e}")))
    };
    let new_layer = match &plan.action {
        Action::ConfigOnly => None,
        Action::Files(items) => Some(write_items(ctx, items, line)?),
        Action::Run { args, env } => {
            let lowers = ctx.lowers(state)?;
            let tmp = tempfile::Builder::new()
                .prefix("run-")
                .tempdir_in(ctx.store.tmp_dir())
                .ctx(|| "creating RUN temp dir")?;
            let upper = tmp.path().join("upper");
            fs::create_dir(&upper).ctx(|| format!("creating {}", upper.display()))?;
            fs::create_dir(tmp.path().join("work")).ctx(|| "creating overlay work dir")?;
            fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .ctx(|| format!("chmod {}", upper.display()))?;
            let workdir = plan
                .config
                .working_dir()
                .clone()
                .unwrap_or_else(|| "/".into());
            let user = plan.config.user().clone().unwrap_or_default();
            let step = RunStep {
                lowers: &lowers,
                upper: &upper,
                args,
                env,
                workdir: &workdir,
                user: &user,
            };
            let code = ctx
                .runner
                .run(&step)
                .map_err(|e| ctx.err(line, format!("RUN failed: {e}")))?;
            if code != 0 {
                return Err(ctx.err(
                    line,
                    format!("RUN {} returned a non-zero code: {code}", args.join(" ")),
                ));
            }
            let mut w = LayerWriter::new(&ctx.store.tmp_dir())?;
            let skipped = add_upper_dir(&mut w, &upper)?;
            for s in skipped {
                ctx.progress.message(&format!(
                    "warning: {} is a socket/fifo/device; not stored in the layer",
                    s.display()
                ));
            }
            Some(NewLayer { blob: w.finish()? })
        }
    };
    let layer = match new_layer {
        None => None,
        Some(NewLayer { blob }) => {
            let tmp_path = blob.file.path().to_path_buf();
            txn.commit_blob_file(&tmp_path, &blob.digest)?;
            let desc = Descriptor::new(
                MediaType::ImageLayerGzip,
                blob.size,
                parse_digest(&blob.digest)?,
            );
            let blob_path = ctx.store.blob_path(&blob.digest)?;
            txn.unpack(
                &blob_path,
                Some(&blob.diff_id),
                &format!("layer {}", blob.digest),
                ctx.progress,
            )?;
            ctx.store
                .write_layer_meta(&blob.diff_id, blob.uncompressed_size)?;
            Some((desc, blob.diff_id))
        }
    };
    Ok(StepResult {
        config: plan.config.clone(),
        history: history(layer.is_none())?,
        layer,
    })
}

fn write_items(ctx: &Ctx<'_>, items: &[Item], line: usize) -> Result<NewLayer> {
    let mut w = LayerWriter::new(&ctx.store.tmp_dir())?;
    let mut seen = std::collections::HashSet::new();
    for it in items {
        match it {
            Item::Dir { dest, meta } => {
                if seen.insert(dest.clone()) {
                    w.dir(dest, *meta)?;
                }
            }
            Item::File {
                dest,
                src,
                meta,
                size,
            } => {
                let f = crate::beneath::open_file(&ctx.context, src)
                    .ctx(|| format!("opening {}", src.display()))?;
                w.file(dest, *meta, *size, f)?;
            }
            Item::Symlink { dest, target, meta } => w.symlink(dest, *meta, target)?,
            Item::Archive { dest, src, chown } => {
                add_archive(&mut w, &ctx.context, dest, src, *chown)
                    .map_err(|e| ctx.err(line, e.to_string()))?
            }
        }
    }
    Ok(NewLayer { blob: w.finish()? })
}

/// ADD of a local tar: its entries re-rooted under `dest`.
fn add_archive(
    w: &mut LayerWriter,
    root: &Path,
    dest: &Path,
    src: &Path,
    chown: Option<(u64, u64)>,
) -> Result<()> {
    let f = crate::beneath::open_file(root, src).ctx(|| format!("opening {}", src.display()))?;
    let mut r = std::io::BufReader::new(f);
    let magic = std::io::BufRead::fill_buf(&mut r)
        .ctx(|| format!("reading {}", src.display()))?
        .to_vec();
    let reader: Box<dyn Read> = match detect(&magic) {
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Some(Compression::None) => Box::new(r),
        None => {
            return Err(ImageError::Other(format!(
                "{}: zstd is not supported",
                src.display()
            )))
        }
    };
    let bad = |e: std::io::Error| ImageError::InvalidArchive {
        path: src.to_path_buf(),
        message: e.to_string(),
    };
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = crate::unpack::normalize_entry_path(&raw)? else {
            continue;
        };
        let h = entry.header();
        let (uid, gid) = match chown {
            Some(o) => o,
            None => (h.uid().map_err(bad)?, h.gid().map_err(bad)?),
        };
        let meta = Meta {
            mode: h.mode().map_err(bad)? & 0o7777,
            uid,
            gid,
            mtime: h.mtime().map_err(bad)?,
        };
        let path = dest.join(&rel);
        match h.entry_type() {
            tar::EntryType::Directory => w.dir(&path, meta)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = h.entry_size().map_err(bad)?;
                w.file(&path, meta, size, &mut entry)?;
            }
            tar::EntryType::Symlink => {
                let t = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                w.symlink(&path, meta, &t)?;
            }
            tar::EntryType::Link => {
                let t = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let trel = crate::unpack::normalize_entry_path(&t)?.unwrap_or_default();
                w.hardlink(&path, meta, &dest.join(trel))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(ImageError::UnsafeEntry {
                    path: raw.display().to_string(),
                    reason: format!("unsupported entry type {other:?} in ADD archive"),
                })
            }
        }
    }
    Ok(())
}

/// "NAME" or "NAME=default" (default expanded).
fn parse_arg(s: &str, vars: &BTreeMap<String, String>) -> (String, Option<String>) {
    match s.trim().split_once('=') {
        Some((k, v)) => (k.trim().to_string(), Some(expand_one(v, vars))),
        None => (s.trim().to_string(), None),
    }
}

/// ENV/LABEL arguments: `k=v k2="v 2"` pairs, or (ENV only) the legacy `KEY value...` form.
fn parse_pairs(
    s: &str,
    vars: &BTreeMap<String, String>,
    legacy: bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let words = shell_words(s, vars, true);
    let first_raw = s.split_whitespace().next().unwrap_or("");
    if legacy && !first_raw.contains('=') {
        let rest = s.trim_start()[first_raw.len()..].trim();
        if rest.is_empty() {
            return Err(format!("ENV {first_raw} needs a value"));
        }
        return Ok(vec![(first_raw.to_string(), expand_one(rest, vars))]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => return Err(format!("expected KEY=VALUE, got {w:?}")),
        }
    }
    if out.is_empty() {
        return Err("expected KEY=VALUE".into());
    }
    Ok(out)
}

/// Quote removal and `$VAR`/`${VAR}`/`${VAR:-default}`/`${VAR:+alt}` substitution on one word.
pub(crate) fn expand_one(s: &str, vars: &BTreeMap<String, String>) -> String {
    shell_words(s, vars, false)
        .into_iter()
        .next()
        .unwrap_or_default()
}

fn shell_words(s: &str, vars: &BTreeMap<String, String>, split: bool) -> Vec<String> {
    let chars: Vec<char> = s.trim().chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has_word = false;
    let mut i = 0;
    let (mut single, mut double) = (false, false);
    while i < chars.len() {
        let c = chars[i];
        if single {
            if c == '\'' {
                single = false;
            } else {
                cur.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '\\' if i + 1 < chars.len() => {
                cur.push(chars[i + 1]);
                i += 2;
                has_word = true;
                continue;
            }
            '\'' if !double => {
                single = true;
                has_word = true;
            }
            '"' => {
                double = !double;
                has_word = true;
            }
            '$' => {
                let (val, used) = substitute(&chars[i + 1..], vars);
                if used == 0 {
                    cur.push('$');
                } else {
                    cur.push_str(&val);
                    i += used;
                }
                has_word = true;
            }
            c if c.is_whitespace() && split && !double => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
        i += 1;
    }
    if has_word || !split {
        words.push(cur);
    }
    words
}

/// Parses what follows a `$`; returns (value, chars consumed).
fn substitute(rest: &[char], vars: &BTreeMap<String, String>) -> (String, usize) {
    let get = |k: &str| vars.get(k).cloned();
    if rest.first() == Some(&'{') {
        let Some(end) = rest.iter().position(|c| *c == '}') else {
            return (String::new(), 0);
        };
        let inner: String = rest[1..end].iter().collect();
        let val = if let Some((k, d)) = inner.split_once(":-") {
            get(k)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| expand_one(d, vars))
        } else if let Some((k, alt)) = inner.split_once(":+") {
            if get(k).is_some_and(|v| !v.is_empty()) {
                expand_one(alt, vars)
            } else {
                String::new()
            }
        } else {
            get(&inner).unwrap_or_default()
        };
        return (val, end + 1);
    }
    let n = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    if n == 0 {
        return (String::new(), 0);
    }
    let name: String = rest[..n].iter().collect();
    (get(&name).unwrap_or_default(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [
            ("A".to_string(), "x".to_string()),
            ("E".to_string(), String::new()),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn substitution_and_quotes() {
        let v = vars();
        assert_eq!(
            expand_one("$A/${A}/${B:-d}/${A:+y}/${E:-e}", &v),
            "x/x/d/y/e"
        );
        assert_eq!(expand_one("'$A' \"$A\"", &v), "$A x");
        assert_eq!(expand_one("\\$A", &v), "$A");
        assert_eq!(
            parse_pairs("K=1 L=\"a b\" M=$A", &v, true).unwrap(),
            vec![
                ("K".into(), "1".into()),
                ("L".into(), "a b".into()),
                ("M".into(), "x".into())
            ]
        );
        assert_eq!(
            parse_pairs("K hello  $A", &v, true).unwrap(),
            vec![("K".into(), "hello  x".into())]
        );
        assert!(parse_pairs("novalue", &v, false).is_err());
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, n: &str| matches(&wildcard(p).expect("a pattern"), n);
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "a.txt.bak"));
        assert!(m("a?c*", "abcdef"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ".hidden"), "a leading dot is not special");
        // Character classes, as filepath.Match has them.
        assert!(m("file[0-9].txt", "file7.txt"));
        assert!(!m("file[0-9].txt", "filex.txt"));
        assert!(m("file[!0-9].txt", "filex.txt"));
        // Plain names and unparseable patterns are looked up literally.
        assert!(wildcard("plain.txt").is_none());
        assert!(wildcard("a[b").is_none());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs(Path::new("/a/./b/../c/")), "/a/c");
        assert_eq!(clean_abs(Path::new("/../..")), "/");
    }
}
