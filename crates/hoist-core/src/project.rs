//! A project: the folder holding `inventory/`, `vars/`, `templates/`, `stacks/` and `playbooks/`,
//! loaded for one inventory, and the desired state a playbook asks of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::Environment;

use crate::desired::{
    self, ActionSpec, ContainerSpec, Desired, EngineSpec, FileSpec, HostDesired, ImageSource,
    ImageSpec, NetworkSpec, VolumeSpec,
};
use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::inventory::{self, Inventory, normalize};
use crate::playbook::{self, Action, Playbook, Wait};
use crate::secret::Redactor;
use crate::source::Source;
use crate::stack::{self, LowerCtx, Stack, StackFile};
use crate::template;
use crate::vars::{self, HostVars, SecretsMode, VarFile};
use crate::vault::Keyring;

#[derive(Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    /// The inventory folder (`-i`).
    pub inventory: PathBuf,
    /// `-e name=value`, in order.
    pub extra_vars: Vec<(String, String)>,
    pub secrets: SecretsMode,
    pub keyring: Option<Keyring>,
    /// Where the files are read from (the disk, or a test's fixture).
    pub source: Source,
    /// The user's home, for `~/` in inventory paths (the command layer knows it).
    pub home: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
    pub source: Source,
    pub inventory: Inventory,
    pub defaults: Vec<VarFile>,
    pub stacks: BTreeMap<String, StackFile>,
    pub env: Environment<'static>,
    pub redactor: Redactor,
    /// Resolved variables per host.
    pub vars: BTreeMap<String, HostVars>,
}

/// Loads the project for one inventory. Problems go to `diags`; `None` only when nothing usable remains.
pub fn load(opts: LoadOptions, diags: &mut Diagnostics) -> Option<Project> {
    let root = opts.root.clone();
    let src = opts.source.clone();
    let inv_dir = if opts.inventory.is_absolute() {
        opts.inventory.clone()
    } else {
        root.join(&opts.inventory)
    };
    let mut inventory = inventory::load(
        &src,
        &root,
        &normalize(&inv_dir),
        opts.home.as_deref(),
        diags,
    )?;
    let mut defaults: Vec<VarFile> = src
        .yaml_files(&root, &root.join("vars"), diags)
        .iter()
        .filter_map(|p| VarFile::load(&src, &root, p, diags))
        .collect();

    let redactor = Redactor::new();
    {
        let mut all: Vec<&mut VarFile> = defaults.iter_mut().collect();
        all.extend(inventory.all_vars.iter_mut());
        all.extend(inventory.group_vars.values_mut().flatten());
        all.extend(inventory.host_vars.values_mut().flatten());
        vars::unseal(
            &mut all,
            opts.keyring.as_ref(),
            opts.secrets,
            &redactor,
            diags,
        );
    }
    let env = template::environment(Some((&src, &template::templates_dir(&root))), &redactor);
    let vars: BTreeMap<String, HostVars> = inventory
        .hosts
        .values()
        .map(|h| {
            (
                h.name.clone(),
                vars::resolve(
                    &inventory,
                    h,
                    &defaults,
                    &opts.extra_vars,
                    &env,
                    &redactor,
                    diags,
                ),
            )
        })
        .collect();

    let mut stacks = BTreeMap::new();
    for path in src.yaml_files(&root, &root.join("stacks"), diags) {
        if let Some(s) = stack::load(&src, &root, &path, diags) {
            if !s.hosts.is_empty()
                && let Err(e) = inventory.select(&s.hosts)
            {
                diags.error(
                    &s.source,
                    s.hosts_loc,
                    "x-hoist.hosts",
                    Kind::UnknownReference,
                    e,
                );
            }
            stacks.insert(s.name.clone(), s);
        }
    }
    Some(Project {
        root,
        source: src,
        inventory,
        defaults,
        stacks,
        env,
        redactor,
        vars,
    })
}

impl Project {
    /// Lowers a stack for a host.
    pub fn lower(
        &self,
        stack: &StackFile,
        host: &str,
        profiles: &[String],
        diags: &mut Diagnostics,
    ) -> Option<Stack> {
        let vars = self.vars.get(host)?;
        let lc = LowerCtx {
            root: &self.root,
            src: &self.source,
            env: &self.env,
            vars,
            host,
            redactor: &self.redactor,
            profiles,
        };
        stack::lower(stack, &lc, diags)
    }

    /// Every playbook of the project.
    pub fn playbook_paths(&self, diags: &mut Diagnostics) -> Vec<PathBuf> {
        self.source
            .yaml_files(&self.root, &self.root.join("playbooks"), diags)
    }

    /// Renders a template file of `templates/` for a host.
    pub fn render_template(
        &self,
        name: &str,
        host: &str,
        origin: &SourceName,
        loc: Loc,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        let vars = self.vars.get(host)?;
        if !self
            .source
            .is_file(&template::templates_dir(&self.root).join(name))
        {
            diags.error(
                origin,
                loc,
                field,
                Kind::UnknownReference,
                format!("no template templates/{name}"),
            );
            return None;
        }
        match template::render_file(&self.env, name, &vars.context()) {
            Ok(s) => Some(s),
            Err(e) => {
                let o = template::Origin {
                    file: SourceName(format!("templates/{name}")),
                    line_offset: 0,
                    field: String::new(),
                };
                template::report(&e, &o, diags);
                None
            }
        }
    }

    /// Renders a playbook string field (`dest: "{{ apm_dir }}/x"`) for a host.
    fn render_field(
        &self,
        s: &str,
        host: &str,
        origin: &SourceName,
        loc: Loc,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        if !template::is_template(s) {
            return Some(s.to_owned());
        }
        let vars = self.vars.get(host)?;
        match template::render_str(&self.env, s, &vars.context()) {
            Ok(r) => Some(r),
            Err(e) => {
                let o = template::Origin {
                    file: origin.clone(),
                    line_offset: loc.line,
                    field: field.to_owned(),
                };
                template::report(&e, &o, diags);
                None
            }
        }
    }

    /// The desired state of every host the playbook touches.
    pub fn desired(
        &self,
        book: &Playbook,
        limit: Option<&[String]>,
        diags: &mut Diagnostics,
    ) -> Desired {
        let mut out = Desired::default();
        let mut lowered: BTreeMap<(String, String, Vec<String>), Option<Stack>> = BTreeMap::new();
        for (play_index, play) in book.plays.iter().enumerate() {
            let hosts = match self.inventory.select(&play.hosts) {
                Ok(h) => h,
                Err(e) => {
                    diags.error(&book.source, play.loc, "hosts", Kind::UnknownReference, e);
                    continue;
                }
            };
            for host in hosts.iter().filter(|h| limit.is_none_or(|l| l.contains(h))) {
                let address = self
                    .inventory
                    .hosts
                    .get(host)
                    .map(|h| h.address.clone())
                    .unwrap_or_default();
                let hd = out
                    .hosts
                    .entry(host.clone())
                    .or_insert_with(|| HostDesired {
                        address,
                        ..HostDesired::default()
                    });
                let (containers, actions) = (hd.containers.len(), hd.actions.len());
                for step in &play.steps {
                    self.apply_step(book, &play.name, step, host, hd, &mut lowered, diags);
                }
                hd.containers[containers..]
                    .iter_mut()
                    .for_each(|c| c.play = play_index);
                hd.actions[actions..]
                    .iter_mut()
                    .for_each(|a| a.play_index = play_index);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_step(
        &self,
        book: &Playbook,
        play: &str,
        step: &playbook::Step,
        host: &str,
        hd: &mut HostDesired,
        lowered: &mut BTreeMap<(String, String, Vec<String>), Option<Stack>>,
        diags: &mut Diagnostics,
    ) {
        let src = &book.source;
        let field = step.action.keyword();
        match &step.action {
            Action::Engine { daemon } => {
                let mut config = desired::default_daemon_config();
                if let (Some(base), Some(extra)) = (config.as_object_mut(), daemon.as_object()) {
                    base.extend(extra.clone());
                }
                hd.engine = Some(EngineSpec { daemon: config });
            }
            Action::File {
                template,
                src: file_src,
                dest,
                mode,
                owner,
                group,
            } => {
                let Some(dest) = self.render_field(dest, host, src, step.loc, "file.dest", diags)
                else {
                    return;
                };
                let (content, origin) = match (template, file_src) {
                    (Some(t), _) => {
                        match self.render_template(t, host, src, step.loc, "file.template", diags) {
                            Some(c) => (c, format!("templates/{t}")),
                            None => return,
                        }
                    }
                    (None, Some(s)) => match self.source.read_to_string(&self.root.join(s)) {
                        Ok(c) => (c, s.clone()),
                        Err(e) => {
                            diags.error(
                                src,
                                step.loc,
                                "file.src",
                                Kind::UnknownReference,
                                format!("cannot read {s}: {e}"),
                            );
                            return;
                        }
                    },
                    (None, None) => return,
                };
                let spec = FileSpec {
                    path: dest.clone(),
                    sensitive: private(*mode),
                    content,
                    mode: *mode,
                    owner: owner.clone(),
                    group: group.clone(),
                    origin,
                };
                self.add_file(hd, spec, src, step.loc, host, diags);
            }
            Action::Stack { stack, .. } | Action::Images { stack } => {
                let (profiles, only_images) = match &step.action {
                    Action::Stack { profiles, .. } => (profiles.clone(), false),
                    _ => (Vec::new(), true),
                };
                let Some(file) = self.stacks.get(stack) else {
                    diags.error(
                        src,
                        step.loc,
                        field,
                        Kind::UnknownReference,
                        format!("no stack `{stack}` (stacks/{stack}.yml)"),
                    );
                    return;
                };
                match self.inventory.select(&file.hosts) {
                    Ok(bound) if !bound.iter().any(|h| h == host) => {
                        diags.error(src, step.loc, field, Kind::InvalidValue, format!("stack `{stack}` is bound to `{}`, which does not include host `{host}`", file.hosts));
                        return;
                    }
                    Err(_) => return,
                    Ok(_) => {}
                }
                let key = (stack.clone(), host.to_owned(), profiles.clone());
                let lowered_stack = lowered
                    .entry(key)
                    .or_insert_with(|| self.lower(file, host, &profiles, diags));
                let Some(st) = lowered_stack.clone() else {
                    return;
                };
                self.add_stack(hd, &st, only_images, src, step.loc, host, diags);
            }
            Action::Wait(w) => {
                if let Wait::Service { stack, service, .. } = w {
                    self.check_service(src, step.loc, field, stack, service, diags);
                }
                hd.actions.extend(ActionSpec::from_action(
                    play,
                    step.name.clone(),
                    &step.action,
                    None,
                ));
            }
            Action::Exec { stack, service, .. } => {
                let container = self.check_service(src, step.loc, field, stack, service, diags);
                hd.actions.extend(ActionSpec::from_action(
                    play,
                    step.name.clone(),
                    &step.action,
                    container,
                ));
            }
            Action::Validate { .. } => hd.actions.extend(ActionSpec::from_action(
                play,
                step.name.clone(),
                &step.action,
                None,
            )),
        }
    }

    /// Checks that `stack` has `service`; returns its container name.
    fn check_service(
        &self,
        src: &SourceName,
        loc: Loc,
        field: &str,
        stack: &str,
        service: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        let Some(file) = self.stacks.get(stack) else {
            diags.error(
                src,
                loc,
                field,
                Kind::UnknownReference,
                format!("no stack `{stack}`"),
            );
            return None;
        };
        let services = match &file.node.value {
            crate::yaml::Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some("services"))
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        let found = match services.as_ref().map(|s| &s.value) {
            Some(crate::yaml::Value::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some(service))
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        let Some(body) = found else {
            diags.error(
                src,
                loc,
                field,
                Kind::UnknownReference,
                format!("stack `{stack}` has no service `{service}`"),
            );
            return None;
        };
        let explicit = match &body.value {
            crate::yaml::Value::Map(e) => e
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some("container_name"))
                .and_then(|(_, v)| v.scalar_text()),
            _ => None,
        };
        Some(explicit.unwrap_or_else(|| container_name(&file.project, service)))
    }

    fn add_file(
        &self,
        hd: &mut HostDesired,
        spec: FileSpec,
        src: &SourceName,
        loc: Loc,
        host: &str,
        diags: &mut Diagnostics,
    ) {
        match hd.files.get(&spec.path) {
            Some(existing)
                if existing.content != spec.content
                    || existing.mode != spec.mode
                    || existing.owner != spec.owner =>
            {
                diags.error(
                    src,
                    loc,
                    "",
                    Kind::Duplicate,
                    format!(
                        "{} is placed twice on host {host} with different content or mode",
                        spec.path
                    ),
                );
            }
            _ => {
                hd.files.insert(spec.path.clone(), spec);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_stack(
        &self,
        hd: &mut HostDesired,
        st: &Stack,
        only_images: bool,
        src: &SourceName,
        loc: Loc,
        host: &str,
        diags: &mut Diagnostics,
    ) {
        for (name, svc) in &st.services {
            let spec = match &svc.build {
                Some(b) => ImageSpec {
                    reference: svc.image.clone(),
                    source: ImageSource::Build {
                        context: b.context.clone(),
                        dockerfile: b.dockerfile.clone(),
                        args: b.args.clone(),
                        context_hash: context_hash(
                            &self.source,
                            &self.root,
                            &b.context,
                            &b.dockerfile,
                            &b.args,
                            &b.binaries,
                        ),
                        binaries: b.binaries.clone(),
                    },
                },
                None => ImageSpec {
                    reference: svc.image.clone(),
                    source: ImageSource::Pull,
                },
            };
            match hd.images.get(&spec.reference) {
                Some(existing) if existing != &spec => diags.error(
                    src,
                    loc,
                    &format!("services.{name}.image"),
                    Kind::Duplicate,
                    format!(
                        "image {} is built two different ways on host {host}",
                        spec.reference
                    ),
                ),
                _ => {
                    hd.images.insert(spec.reference.clone(), spec);
                }
            }
        }
        if only_images {
            return;
        }
        hd.projects.insert(st.project.clone());
        for net in st.networks.values() {
            hd.networks.insert(
                net.name.clone(),
                NetworkSpec {
                    name: net.name.clone(),
                    driver: net.driver.clone().unwrap_or_else(|| "bridge".into()),
                    project: st.project.clone(),
                    external: net.external,
                },
            );
        }
        let mut volume_names = BTreeMap::new();
        for (key, vol) in &st.volumes {
            volume_names.insert(key.clone(), vol.name.clone());
            hd.volumes.insert(
                vol.name.clone(),
                VolumeSpec {
                    name: vol.name.clone(),
                    driver: vol.driver.clone().unwrap_or_else(|| "local".into()),
                    project: st.project.clone(),
                    external: vol.external,
                },
            );
        }
        let names: BTreeMap<&String, String> = st
            .services
            .iter()
            .map(|(n, s)| {
                (
                    n,
                    s.container_name
                        .clone()
                        .unwrap_or_else(|| container_name(&st.project, n)),
                )
            })
            .collect();
        let order = stack::start_order(&st.services).unwrap_or_default();
        for name in order {
            let svc = &st.services[&name];
            let mut mounted = BTreeMap::new();
            for f in &svc.files {
                let spec = FileSpec {
                    path: f.path.clone(),
                    sensitive: private(f.mode),
                    content: f.content.clone(),
                    mode: f.mode,
                    owner: f.owner.clone(),
                    group: None,
                    origin: f.origin.clone(),
                };
                mounted.insert(f.path.clone(), spec.sha256());
                self.add_file(hd, spec, src, loc, host, diags);
            }
            let mut spec = ContainerSpec {
                name: names[&name].clone(),
                project: st.project.clone(),
                service: name.clone(),
                image: svc.image.clone(),
                command: svc.command.clone(),
                entrypoint: svc.entrypoint.clone(),
                env: svc.environment.clone(),
                ports: svc.ports.clone(),
                mounts: svc
                    .mounts
                    .iter()
                    .map(|m| desired::mount_spec(&m.source, &volume_names, &m.target, m.read_only))
                    .collect(),
                networks: svc
                    .networks
                    .iter()
                    .map(|(n, aliases)| {
                        let engine_name = st
                            .networks
                            .get(n)
                            .map(|d| d.name.clone())
                            .unwrap_or_else(|| n.clone());
                        let mut a = aliases.clone();
                        a.push(name.clone());
                        a.sort();
                        a.dedup();
                        (engine_name, a)
                    })
                    .collect(),
                healthcheck: svc.healthcheck.clone(),
                restart: svc.restart.clone(),
                labels: svc.labels.clone(),
                extra_hosts: svc.extra_hosts.clone(),
                user: svc.user.clone(),
                working_dir: svc.working_dir.clone(),
                hostname: svc.hostname.clone(),
                stop_grace_period_s: svc.stop_grace_period_s,
                depends_on: svc
                    .depends_on
                    .iter()
                    .filter_map(|(d, c)| names.get(d).map(|n| (n.clone(), c.kind)))
                    .collect(),
                mounted_files: mounted,
                config_hash: String::new(),
                play: 0,
            };
            spec.seal();
            hd.containers.retain(|c| c.name != spec.name);
            hd.containers.push(spec);
        }
    }
}

/// A file only its owner may read is treated as holding secrets, whatever the redactor knows.
fn private(mode: u32) -> bool {
    mode & 0o044 == 0
}

/// compose's container name for the first replica of a service.
pub fn container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}-1")
}

/// A hash of a build context: every file's path and content, the Dockerfile name, the build args,
/// and what the added binaries are made from (a workspace binary's input files, a crate's name,
/// version and features).
pub fn context_hash(
    src: &Source,
    root: &Path,
    context: &str,
    dockerfile: &str,
    args: &BTreeMap<String, String>,
    binaries: &BTreeMap<String, desired::Binary>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    hash_tree(src, &mut h, &root.join(context));
    h.update(dockerfile.as_bytes());
    for (k, v) in args {
        h.update(format!("\0{k}={v}").as_bytes());
    }
    for (name, binary) in binaries {
        h.update(format!("\0binary {name}\0").as_bytes());
        match binary {
            desired::Binary::Workspace { package, inputs } => {
                h.update(format!("cargo {package}\0").as_bytes());
                for input in inputs {
                    h.update(format!("{input}\0").as_bytes());
                    let path = root.join(input);
                    if src.is_dir(&path) {
                        hash_tree(src, &mut h, &path);
                    } else if let Ok(bytes) = src.read(&path) {
                        h.update(&bytes);
                    }
                }
            }
            desired::Binary::Crate {
                name,
                version,
                features,
            } => h.update(format!("crate {name} {version} {}", features.join(",")).as_bytes()),
        }
    }
    hex::encode(h.finalize())
}

/// Every file's path (relative to `dir`) and content, in order.
fn hash_tree(src: &Source, h: &mut sha2::Sha256, dir: &Path) {
    use sha2::Digest as _;
    for rel in src.files_under(dir) {
        h.update(rel.as_bytes());
        h.update([0]);
        if let Ok(bytes) = src.read(&dir.join(&rel)) {
            h.update(&bytes);
        }
        h.update([0]);
    }
}

/// A key or known_hosts file the inventory names but that is not there: ssh would only say the
/// host "refused authentication" or its key "is unknown".
fn connection_files(src: &Source, inv: &Inventory, diags: &mut Diagnostics) {
    for h in inv.hosts.values() {
        let c = &h.connection;
        for (field, path) in [
            ("identity_file", &c.identity_file),
            ("known_hosts_file", &c.known_hosts_file),
        ] {
            if let Some(p) = path
                && !src.is_file(p)
            {
                diags.warning(
                    &inv.file,
                    h.loc,
                    &format!("hosts.{}.{field}", h.name),
                    Kind::Io,
                    format!("{} does not exist", p.display()),
                );
            }
        }
    }
}

/// Loads and checks everything: every playbook's desired state on every host it targets, every stack
/// on every host it is bound to, and the syntax of every template.
pub fn check(project: &Project, diags: &mut Diagnostics) {
    connection_files(&project.source, &project.inventory, diags);
    for path in project.playbook_paths(diags) {
        if let Some(book) = playbook::load(&project.source, &project.root, &path, diags) {
            project.desired(&book, None, diags);
        }
    }
    for file in project.stacks.values() {
        if let Ok(hosts) = project.inventory.select(&file.hosts) {
            for h in hosts {
                project.lower(file, &h, &[], diags);
            }
        }
    }
    let dir = template::templates_dir(&project.root);
    for name in project
        .source
        .files_under(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".j2"))
    {
        if let Err(e) = project.env.get_template(&name) {
            let o = template::Origin {
                file: SourceName(format!("templates/{name}")),
                line_offset: 0,
                field: String::new(),
            };
            template::report(&e, &o, diags);
        }
    }
}
