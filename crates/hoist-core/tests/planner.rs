//! The planner, case by case: a multi-file project in one string, loaded in memory, planned
//! against what a converged host reports after the test changed one thing of it; the plan text
//! is compared inline (`UPDATE_EXPECT=1 cargo test` rewrites the expectations).

use std::collections::BTreeMap;
use std::path::Path;

use expect_test::{Expect, expect};
use hoist_core::desired::{Desired, labels};
use hoist_core::diag::Diagnostics;
use hoist_core::observed::{self, HostObserved, ImageDefaults, Observed, ObservedContainer};
use hoist_core::project::{self, LoadOptions};
use hoist_core::secret::Redactor;
use hoist_core::source::Source;
use hoist_core::stack::{FailureAction, Port, UpdateConfig, UpdateOrder};
use hoist_core::vars::SecretsMode;
use hoist_core::{plan, playbook, render};

/// A small project: one host with the engine, a rendered file, and a stack of two services, one
/// mounting a repository file.
const PROJECT: &str = r#"
//- inventory/test/hosts.yml
hosts:
  app-1:
    address: 10.0.0.1
groups:
  app:
    hosts: [app-1]
//- vars/defaults.yml
mode: prod
//- templates/app.env.j2
MODE={{ mode }}
//- stacks/conf/web.conf
listen 8080;
//- stacks/app.yml
name: shop
x-hoist:
  hosts: app
services:
  db:
    image: postgres:17
    environment:
      POSTGRES_DB: shop
    volumes:
      - data:/var/lib/postgresql/data
    healthcheck:
      test: pg_isready
      interval: 5s
    restart: unless-stopped
  web:
    image: nginx:1.27
    command: ["nginx", "-g", "daemon off;"]
    ports:
      - "8080:80"
    volumes:
      - ./conf/web.conf:/etc/nginx/conf.d/web.conf:ro
    depends_on:
      db:
        condition: service_healthy
volumes:
  data: {}
//- playbooks/site.yml
- name: app
  hosts: app
  steps:
    - engine: {}
    - file: {template: app.env.j2, dest: /etc/shop/app.env, mode: "0640"}
    - stack: app
"#;

fn root() -> &'static Path {
    Path::new("/project")
}

/// How the tests load a fixture: the test inventory, secrets optional, no home.
fn options(fixture: &str) -> LoadOptions {
    LoadOptions {
        root: root().to_path_buf(),
        inventory: "inventory/test".into(),
        extra_vars: Vec::new(),
        secrets: SecretsMode::Optional,
        keyring: None,
        source: Source::fixture(root(), fixture),
        home: None,
    }
}

/// The desired state of `fixture`'s `site.yml`, its problems reported into `diags`.
fn lower(fixture: &str, diags: &mut Diagnostics) -> Desired {
    let opts = options(fixture);
    let source = opts.source.clone();
    let project = project::load(opts, diags).expect("loads");
    let book = playbook::load(&source, root(), &root().join("playbooks/site.yml"), diags)
        .expect("site.yml");
    project.desired(&book, None, diags)
}

/// The project of `fixture` and the desired state of its `site.yml`.
fn desired(fixture: &str) -> Desired {
    let mut diags = Diagnostics::new();
    let desired = lower(fixture, &mut diags);
    assert!(diags.is_empty(), "{:#?}", diags.sorted());
    desired
}

/// The diagnostics of loading `fixture` and lowering its `site.yml`.
fn diagnostics_of(fixture: &str) -> Vec<String> {
    let mut diags = Diagnostics::new();
    lower(fixture, &mut diags);
    diags.sorted().iter().map(|d| d.to_string()).collect()
}

/// What the images supply, as an engine reports it.
fn image_defaults() -> ImageDefaults {
    ImageDefaults {
        env: vec!["PATH=/usr/bin:/bin".into()],
        cmd: Some(vec!["postgres".into()]),
        ..ImageDefaults::default()
    }
}

/// Plans `fixture` against the hosts as they are once `observed_fixture` is applied exactly, then
/// changed by `drift` (what the engine or a person did since).
fn check_with(
    observed_fixture: &str,
    fixture: &str,
    drift: impl Fn(&mut HostObserved),
    expect: Expect,
) {
    let before = desired(observed_fixture);
    let mut observed = Observed::default();
    for (name, want) in &before.hosts {
        let mut have = observed::converged(want, &image_defaults());
        drift(&mut have);
        observed.hosts.insert(name.clone(), have);
    }
    let plan = plan::diff(
        &desired(fixture),
        &observed,
        "site.yml",
        "test",
        &Redactor::new(),
    );
    expect.assert_eq(&render::plan_text(&plan, false, &Redactor::new()));
}

/// Plans the project against hosts that converged on it and then drifted by `drift`.
fn check(drift: impl Fn(&mut HostObserved), expect: Expect) {
    check_with(PROJECT, PROJECT, drift, expect);
}

fn container<'a>(h: &'a mut HostObserved, name: &str) -> &'a mut ObservedContainer {
    h.docker
        .as_mut()
        .and_then(|d| d.containers.get_mut(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

// Normalisation: what the engine fills in is not a change.

#[test]
fn a_converged_host_plans_nothing() {
    check(
        |_| {},
        expect![[r#"
        plan: site.yml on inventory test

        app-1 (10.0.0.1)
          no changes

        No changes: 1 host(s) match the playbook (0 action(s) would still run).
    "#]],
    );
}

#[test]
fn the_images_environment_is_not_a_change() {
    check(
        |h| {
            let db = container(h, "shop-db-1");
            db.image_defaults.env.push("PG_MAJOR=17".into());
            db.env.push("PG_MAJOR=17".into());
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              no changes

            No changes: 1 host(s) match the playbook (0 action(s) would still run).
        "#]],
    );
}

#[test]
fn both_address_families_of_a_binding_are_one_port() {
    check(
        |h| {
            let web = container(h, "shop-web-1");
            web.ports = vec![
                Port {
                    host_ip: "0.0.0.0".into(),
                    published: Some(8080),
                    target: 80,
                    protocol: "tcp".into(),
                },
                Port {
                    host_ip: "::".into(),
                    published: Some(8080),
                    target: 80,
                    protocol: "tcp".into(),
                },
            ];
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              no changes

            No changes: 1 host(s) match the playbook (0 action(s) would still run).
        "#]],
    );
}

#[test]
fn the_engines_own_aliases_are_not_a_change() {
    check(
        |h| {
            let web = container(h, "shop-web-1");
            for aliases in web.networks.values_mut() {
                aliases.push("0123456789ab".into());
            }
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              no changes

            No changes: 1 host(s) match the playbook (0 action(s) would still run).
        "#]],
    );
}

#[test]
fn an_image_label_is_not_a_change() {
    check(
        |h| {
            let db = container(h, "shop-db-1");
            let label = (
                "org.opencontainers.image.version".to_owned(),
                "17".to_owned(),
            );
            db.image_defaults
                .labels
                .insert(label.0.clone(), label.1.clone());
            db.labels.insert(label.0, label.1);
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              no changes

            No changes: 1 host(s) match the playbook (0 action(s) would still run).
        "#]],
    );
}

// Why a container is recreated.

#[test]
fn another_image_recreates() {
    check(
        |h| container(h, "shop-web-1").image = "nginx:1.26".into(),
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-web-1 (recreate)
                    image: nginx:1.26 -> nginx:1.27

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn another_command_recreates() {
    check(
        |h| container(h, "shop-web-1").cmd = Some(vec!["nginx".into()]),
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-web-1 (recreate)
                    command: nginx -> nginx -g 'daemon off;'

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn another_environment_value_recreates_without_showing_it() {
    check(
        |h| {
            let db = container(h, "shop-db-1");
            db.env.retain(|e| !e.starts_with("POSTGRES_DB="));
            db.env.push("POSTGRES_DB=secret-old-name".into());
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-db-1 (recreate)
                    env POSTGRES_DB: value changed

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn another_published_port_recreates() {
    check(
        |h| {
            for p in &mut container(h, "shop-web-1").ports {
                p.published = Some(9090);
            }
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-web-1 (recreate)
                    ports: 9090:80/tcp -> 8080:80/tcp

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn another_restart_policy_recreates() {
    check(
        |h| container(h, "shop-db-1").restart = "always".into(),
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-db-1 (recreate)
                    restart: always -> unless-stopped

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn a_changed_mounted_file_recreates_its_container_only() {
    let edited = PROJECT.replace("listen 8080;", "listen 8081;");
    check_with(
        PROJECT,
        &edited,
        |_| {},
        expect![[r#"
        plan: site.yml on inventory test

        app-1 (10.0.0.1)
            ~ file /opt/hoist/shop/stacks/conf/web.conf (update)
                content: differs
                --- /opt/hoist/shop/stacks/conf/web.conf (host)
                +++ /opt/hoist/shop/stacks/conf/web.conf (desired)
                @@ -1 +1 @@
                -listen 8080;
                +listen 8081;
          -/+ container shop-web-1 (recreate)
                mounted file: /opt/hoist/shop/stacks/conf/web.conf content changed

        Plan: 1 host(s), 0 to create, 1 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
    "#]],
    );
}

#[test]
fn a_stopped_container_is_started() {
    check(
        |h| {
            let db = container(h, "shop-db-1");
            db.state = "exited".into();
            db.exit_code = Some(0);
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                ~ container shop-db-1 (start)
                    state: exited -> running

            Plan: 1 host(s), 0 to create, 1 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn a_container_made_by_another_hoist_config_is_recreated() {
    check(
        |h| {
            container(h, "shop-db-1")
                .labels
                .insert(labels::CONFIG_HASH.into(), "older".into());
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              -/+ container shop-db-1 (recreate)
                    config-hash: not created by hoist from this spec

            Plan: 1 host(s), 0 to create, 0 to update, 1 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

// Files.

#[test]
fn a_changed_file_shows_its_diff() {
    check(
        |h| {
            let f = h.files.get_mut("/etc/shop/app.env").expect("file");
            f.content = Some("MODE=dev\n".into());
            f.sha256 = hoist_core::desired::sha256_hex(b"MODE=dev\n");
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                ~ file /etc/shop/app.env (update)
                    content: differs
                    --- /etc/shop/app.env (host)
                    +++ /etc/shop/app.env (desired)
                    @@ -1 +1 @@
                    -MODE=dev
                    +MODE=prod

            Plan: 1 host(s), 0 to create, 1 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn a_file_with_another_mode_is_updated() {
    check(
        |h| h.files.get_mut("/etc/shop/app.env").expect("file").mode = "0644".into(),
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                ~ file /etc/shop/app.env (update)
                    mode: 0644 -> 0640

            Plan: 1 host(s), 0 to create, 1 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

#[test]
fn a_missing_file_is_created() {
    check(
        |h| {
            h.files.remove("/etc/shop/app.env");
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                + file /etc/shop/app.env (create)
                    mode: 0640
                    --- /etc/shop/app.env (host)
                    +++ /etc/shop/app.env (desired)
                    @@ -0,0 +1 @@
                    +MODE=prod

            Plan: 1 host(s), 1 to create, 0 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

// Deletions, listed apart.

#[test]
fn a_service_removed_from_the_stack_is_a_deletion() {
    let fewer = PROJECT.replace(
        "      db:\n        condition: service_healthy\n",
        "      []\n",
    );
    let fewer = fewer.replace("    depends_on:\n      []\n", "");
    let cut = fewer.find("  web:").expect("web");
    let end = fewer.find("volumes:\n  data").expect("volumes");
    let without_web = format!("{}{}", &fewer[..cut], &fewer[end..]);
    check_with(
        PROJECT,
        &without_web,
        |_| {},
        expect![[r#"
        plan: site.yml on inventory test

        app-1 (10.0.0.1)
          deletions (applied only with --prune):
            - container shop-web-1 (delete)
                service: no longer in the stack

        Plan: 1 host(s), 0 to create, 0 to update, 0 to recreate, 1 to delete (only with --prune), 0 unknown until applied.
    "#]],
    );
}

#[test]
fn a_leftover_of_an_interrupted_replacement_is_removed_as_a_change() {
    check(
        |h| {
            let web = container(h, "shop-web-1").clone();
            if let Some(d) = h.docker.as_mut() {
                d.containers.insert("shop-web-1.hoist-old".into(), web);
            }
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                - container shop-web-1.hoist-old (delete)
                    name: left by an interrupted replacement

            Plan: 1 host(s), 0 to create, 1 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

// What is known only once applied.

#[test]
fn a_host_without_an_engine_plans_its_content_as_unknown() {
    check(
        |h| {
            h.docker = None;
            if let Some(e) = h.engine.as_mut() {
                e.installed = false;
                e.running = false;
            }
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
              ? the Docker engine is not installed or not answering: its images, networks, volumes and containers are known after engine setup
                + engine docker (install)
                    installed: no -> yes
                + image nginx:1.27 (pull) (known after apply)
                    image: not on host
                + image postgres:17 (pull) (known after apply)
                    image: not on host
                + network shop_default (create) (known after apply)
                + volume shop_data (create) (known after apply)
                + container shop-db-1 (create) (known after apply)
                + container shop-web-1 (create) (known after apply)

            Plan: 1 host(s), 7 to create, 0 to update, 0 to recreate, 0 to delete (only with --prune), 6 unknown until applied.
        "#]],
    );
}

#[test]
fn another_daemon_configuration_restarts_the_engine() {
    check(
        |h| {
            if let Some(e) = h.engine.as_mut() {
                e.daemon = Some(serde_json::json!({"debug": true}));
            }
        },
        expect![[r#"
            plan: site.yml on inventory test

            app-1 (10.0.0.1)
                ~ engine docker (configure)
                    daemon.json: content differs
                    --- /etc/docker/daemon.json (host)
                    +++ /etc/docker/daemon.json (desired)
                    @@ -1,3 +1,8 @@
                     {
                    -  "debug": true
                    +  "live-restore": true,
                    +  "log-driver": "json-file",
                    +  "log-opts": {
                    +    "max-size": "10m",
                    +    "max-file": "3"
                    +  }
                     }

            Plan: 1 host(s), 0 to create, 1 to update, 0 to recreate, 0 to delete (only with --prune), 0 unknown until applied.
        "#]],
    );
}

// Loading reports problems with their place, from the in-memory project too.

#[test]
fn an_unknown_template_is_located() {
    let broken = PROJECT.replace("template: app.env.j2", "template: nope.j2");
    let shown = diagnostics_of(&broken);
    expect![[r#"
        [
            "error[unknown-reference]: playbooks/site.yml:5:7: file.template: no template templates/nope.j2",
        ]
    "#]].assert_debug_eq(&shown);
}

#[test]
fn check_names_a_key_that_is_not_there() {
    let keyed = PROJECT.replace(
        "    address: 10.0.0.1\n",
        "    address: 10.0.0.1\n    identity_file: ../../../keys/id\n",
    );
    let mut diags = Diagnostics::new();
    let opts = options(&keyed);
    let project = project::load(opts, &mut diags).expect("loads");
    let key = &project.inventory.hosts["app-1"].connection.identity_file;
    assert_eq!(
        key.as_deref(),
        Some(Path::new("/keys/id")),
        "the leading .. are kept"
    );
    project::check(&project, &mut diags);
    let shown: Vec<String> = diags.sorted().iter().map(|d| d.to_string()).collect();
    expect![[r#"
        [
            "warning[io]: inventory/test/hosts.yml:2:3: hosts.app-1.identity_file: /keys/id does not exist",
        ]
    "#]].assert_debug_eq(&shown);
}

#[test]
fn repository_paths_stay_inside_the_project() {
    let outside = PROJECT
        .replace(
            "      POSTGRES_DB: shop\n",
            "      POSTGRES_DB: shop\n    env_file: [../../home/op/.config/hoist/key.txt]\n",
        )
        .replace(
            "      - ./conf/web.conf:/etc/nginx/conf.d/web.conf:ro\n",
            "      - ../../etc/shadow:/etc/nginx/conf.d/web.conf:ro\n",
        )
        .replace(
            "    - file: {template: app.env.j2, dest: /etc/shop/app.env, mode: \"0640\"}\n",
            "    - file: {src: ../etc/passwd, dest: /etc/shop/app.env, mode: \"0640\"}\n",
        );
    expect![[r#"
        [
            "error[invalid-value]: playbooks/site.yml:5:7: file.src: \"../etc/passwd\" is outside the project (links resolved): a file step reads only the repository's own files",
            "error[invalid-value]: stacks/app.yml:9:15: services.db.env_file[0]: \"../../home/op/.config/hoist/key.txt\" is outside the project (links resolved): a stack reads only the repository's own files",
            "error[invalid-value]: stacks/app.yml:22:9: services.web.volumes[0]: \"../../etc/shadow\" lies outside the project",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&outside));
}

#[test]
fn a_bad_env_line_is_named_by_line_and_key_never_shown() {
    let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let fixture = PROJECT
        .replace(
            "      POSTGRES_DB: shop\n",
            "      POSTGRES_DB: shop\n    env_file: [db.env]\n",
        )
        .replace(
            "//- stacks/app.yml\n",
            &format!("//- stacks/db.env\n# settings\nGOOD=1\nTOKEN={secret} and more\n{secret}\n//- stacks/app.yml\n"),
        );
    let shown = diagnostics_of(&fixture);
    assert!(!shown.iter().any(|d| d.contains("QQQQ")), "{shown:#?}");
    expect![[r#"
        [
            "error[invalid-value]: stacks/app.yml:9:15: services.db.env_file[0]: db.env: line 3 (key TOKEN): not a KEY=value line (at column 76)",
            "error[invalid-value]: stacks/app.yml:9:15: services.db.env_file[0]: db.env: line 4: not a KEY=value line (at column 4)",
        ]
    "#]]
    .assert_debug_eq(&shown);
}

#[test]
fn names_that_reach_the_engine_and_paths_on_hosts_are_checked_at_load() {
    let bad = PROJECT
        .replace(
            "  web:\n    image: nginx:1.27\n",
            "  \"web/../../v1.45/containers\":\n    image: nginx:1.27\n",
        )
        .replace(
            "    image: postgres:17\n",
            "    image: postgres:17\n    container_name: \"shop db\"\n",
        )
        .replace(
            "volumes:\n  data: {}\n",
            "volumes:\n  data: {}\n  odd: {name: \"../odd\"}\n",
        )
        .replace(
            "dest: /etc/shop/app.env,",
            "dest: \"/etc/shop/../../root/.ssh/authorized_keys\",",
        );
    expect![[r#"
        [
            "error[invalid-value]: playbooks/site.yml:5:7: file.dest: \"/etc/shop/../../root/.ssh/authorized_keys\" is not a normal path (no `.`, `..`, empty parts or final `/`)",
            "error[invalid-value]: stacks/app.yml:7:21: services.db.container_name: \"shop db\" is not a valid container name: letters, digits, '_', '.' and '-', starting with a letter or digit",
            "error[invalid-value]: stacks/app.yml:16:3: services.web/../../v1.45/containers: \"web/../../v1.45/containers\" is not a valid service name: letters, digits, '_', '.' and '-', starting with a letter or digit",
            "error[invalid-value]: stacks/app.yml:28:3: volumes.odd: \"../odd\" is not a valid volume name: letters, digits, '_', '.' and '-', starting with a letter or digit",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&bad));
}

#[test]
fn a_template_that_runs_without_end_fails_located() {
    let endless = PROJECT.replace(
        "MODE={{ mode }}\n",
        "MODE={{ mode }}\n{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\n",
    );
    expect![[r#"
        [
            "error[template]: templates/app.env.j2:2: engine ran out of fuel: engine ran out of fuel",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&endless));
}

// The compose service model: every runtime key, alone.

/// Each runtime key (YAML added to the `web` service) and the reason a plan names for it.
const RUNTIME_KEYS: &[(&str, &str)] = &[
    ("cap_add: [NET_ADMIN, sys_time]", "cap_add"),
    ("cap_drop: [ALL]", "cap_drop"),
    ("privileged: true", "privileged"),
    ("read_only: true", "read_only"),
    ("init: true", "init"),
    ("tmpfs: [/run, \"/tmp:size=64m\"]", "tmpfs"),
    ("sysctls: {net.core.somaxconn: 1024}", "sysctls"),
    ("shm_size: 256m", "shm_size"),
    (
        "ulimits: {nofile: {soft: 20000, hard: 40000}, nproc: 65535}",
        "ulimits",
    ),
    ("security_opt: [no-new-privileges:true]", "security_opt"),
    ("devices: [/dev/fuse]", "devices"),
    ("dns: 1.1.1.1", "dns"),
    ("dns_search: [example.org]", "dns_search"),
    ("dns_opt: [use-vc]", "dns_opt"),
    ("group_add: [audio, 1001]", "group_add"),
    ("stop_signal: SIGQUIT", "stop_signal"),
    ("stdin_open: true", "stdin_open"),
    ("tty: true", "tty"),
    ("expose: [\"9000\", 9001/udp]", "expose"),
    (
        "logging: {driver: local, options: {max-size: 10m}}",
        "logging",
    ),
    ("runtime: runsc", "runtime"),
    ("pid: host", "pid"),
    ("ipc: host", "ipc"),
    ("mem_limit: 512m", "deploy.resources.limits.memory"),
    (
        "mem_reservation: 128m",
        "deploy.resources.reservations.memory",
    ),
    ("memswap_limit: 1g", "memswap_limit"),
    ("cpus: 1.5", "deploy.resources.limits.cpus"),
    ("cpu_shares: 512", "cpu_shares"),
    ("pids_limit: 100", "deploy.resources.limits.pids"),
    (
        "deploy: {resources: {limits: {cpus: \"0.5\", memory: 256M, pids: 64}}}",
        "deploy.resources.limits.memory, deploy.resources.limits.cpus, deploy.resources.limits.pids",
    ),
    (
        "deploy: {resources: {reservations: {memory: 64M}}}",
        "deploy.resources.reservations.memory",
    ),
    (
        "deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1, capabilities: [gpu, utility]}]}}}",
        "deploy.resources.reservations.devices",
    ),
    (
        "deploy: {resources: {reservations: {devices: [{device_ids: [\"0\", \"3\"], capabilities: [gpu], options: {virtualization: \"false\"}}]}}}",
        "deploy.resources.reservations.devices",
    ),
    ("gpus: all", "deploy.resources.reservations.devices"),
    (
        "deploy: {restart_policy: {condition: on-failure, max_attempts: 3}}",
        "restart",
    ),
];

/// The project with `yaml` added to its `web` service.
/// The web container of `fixture`'s desired state on app-1.
fn web_of(fixture: &str) -> hoist_core::desired::ContainerSpec {
    desired(fixture).hosts["app-1"]
        .containers
        .iter()
        .find(|c| c.service == "web")
        .cloned()
        .expect("web")
}

fn with_web(yaml: &str) -> String {
    PROJECT.replace(
        "  web:\n    image: nginx:1.27\n",
        &format!("  web:\n    image: nginx:1.27\n    {yaml}\n"),
    )
}

/// The plan of `fixture` against hosts converged on `observed_fixture`.
fn converged_plan(observed_fixture: &str, fixture: &str) -> plan::Plan {
    let before = desired(observed_fixture);
    let mut observed = Observed::default();
    for (name, want) in &before.hosts {
        observed
            .hosts
            .insert(name.clone(), observed::converged(want, &image_defaults()));
    }
    plan::diff(
        &desired(fixture),
        &observed,
        "site.yml",
        "test",
        &Redactor::new(),
    )
}

/// The container changes of planning `fixture` against hosts converged on `observed_fixture`.
fn container_changes(observed_fixture: &str, fixture: &str) -> Vec<(String, String, Vec<String>)> {
    let plan = converged_plan(observed_fixture, fixture);
    plan.hosts
        .iter()
        .flat_map(|h| h.changes.iter())
        .filter(|c| c.kind == plan::ResourceKind::Container)
        .map(|c| {
            (
                c.name.clone(),
                format!("{:?}", c.action),
                c.reasons.iter().map(|r| r.field.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn each_runtime_key_alone_recreates_its_container_naming_the_key() {
    for (yaml, reason) in RUNTIME_KEYS {
        let fixture = with_web(yaml);
        let changes = container_changes(PROJECT, &fixture);
        let named: Vec<String> = reason.split(", ").map(str::to_owned).collect();
        assert_eq!(
            changes,
            [("shop-web-1".to_owned(), "Recreate".to_owned(), named)],
            "{yaml}"
        );
        // Applied exactly, as the engine reports it: nothing more to do.
        assert_eq!(
            container_changes(&fixture, &fixture),
            [],
            "{yaml} converged"
        );
    }
}

/// The web service of [`PROJECT`] with `yaml`, and a network `front` with a subnet of its own.
fn with_front(yaml: &str) -> String {
    with_web(yaml).replace(
        "volumes:\n  data: {}\n",
        "volumes:\n  data: {}\nnetworks:\n  front:\n    ipam:\n      config:\n        - subnet: 172.28.0.0/24\n        - subnet: fd28::/64\n",
    )
}

/// A static address (`networks.<name>.ipv4_address`, `ipv6_address`) is asked of the engine as
/// the container joins the network: set, changed or dropped alone, it recreates the container
/// naming its key; applied exactly, nothing more.
#[test]
fn a_static_address_alone_recreates_its_container_naming_the_key() {
    let plain = with_front("networks: [front]");
    let v4 = with_front("networks: {front: {ipv4_address: 172.28.0.10}}");
    let moved = with_front("networks: {front: {ipv4_address: 172.28.0.11}}");
    let v6 =
        with_front("networks: {front: {ipv4_address: 172.28.0.10, ipv6_address: \"fd28::10\"}}");
    let recreate = |key: &str| {
        vec![(
            "shop-web-1".to_owned(),
            "Recreate".to_owned(),
            vec![format!("networks.shop_front.{key}")],
        )]
    };
    assert_eq!(container_changes(&plain, &v4), recreate("ipv4_address"));
    assert_eq!(container_changes(&v4, &moved), recreate("ipv4_address"));
    assert_eq!(container_changes(&v4, &v6), recreate("ipv6_address"));
    assert_eq!(container_changes(&v4, &plain), recreate("ipv4_address"));
    for fixture in [&v4, &v6] {
        assert_eq!(container_changes(fixture, fixture), [], "{fixture}");
    }
    let web = web_of(&v6);
    assert_eq!(
        web.addresses["shop_front"],
        hoist_core::desired::StaticAddress {
            ipv4: Some("172.28.0.10".into()),
            ipv6: Some("fd28::10".into()),
        }
    );
}

/// An address is checked where it is written: its family, a subnet of the network that holds it,
/// one container to have it at a time.
#[test]
fn a_static_address_is_checked_against_its_network_and_replicas() {
    let cases = [
        (
            with_front("networks: {front: {ipv4_address: 10.1.1.1}}"),
            "services.web.networks.front.ipv4_address: 10.1.1.1 is not in network `front`'s subnets (172.28.0.0/24, fd28::/64)",
        ),
        (
            with_front("networks: {front: {ipv4_address: \"fd28::1\"}}"),
            "services.web.networks.front.ipv4_address: \"fd28::1\" is not an IPv4 address",
        ),
        (
            with_web("networks: {default: {ipv4_address: 172.28.0.10}}"),
            "services.web.networks.default.ipv4_address: 172.28.0.10 needs a subnet to come from: give network `default` an `ipam.config` with one that holds it",
        ),
        (
            with_front("networks: {front: {ipv4_address: 172.28.0.10}}\n    deploy: {replicas: 2}")
                .replace("    ports:\n      - \"8080:80\"\n", ""),
            "services.web.networks.front: a static address is one container's, and the service runs 2 replicas",
        ),
        (
            with_front("networks: {front: {ipv4_address: 172.28.0.10}}\n    deploy: {update_config: {order: start-first}}")
                .replace("    ports:\n      - \"8080:80\"\n", ""),
            "services.web.deploy.update_config.order: start-first runs two containers at once, and its static address on network `front` cannot be held by both: use stop-first",
        ),
    ];
    assert_diagnosed(&cases);
    assert_eq!(
        diagnostics_of(&with_front(
            "networks: {front: {ipv4_address: 172.28.0.10}}"
        )),
        Vec::<String>::new()
    );
}

/// Each fixture's diagnostics hold one that ends with its message (the path and what is wrong).
fn assert_diagnosed(cases: &[(String, &str)]) {
    for (fixture, want) in cases {
        let diags = diagnostics_of(fixture);
        assert!(
            diags.iter().any(|d| d.ends_with(want)),
            "{want}\nnot among:\n{}",
            diags.join("\n")
        );
    }
}

/// [`PROJECT`] with the web service given `web`, and a service `probe` in its network namespace
/// given `probe`.
fn with_probe(web: &str, probe: &str) -> String {
    with_web(web).replace(
        "volumes:\n  data: {}\n",
        &format!(
            "  probe:\n    image: busybox\n    network_mode: {probe}\nvolumes:\n  data: {{}}\n"
        ),
    )
}

/// `network_mode: service:web`: the engine's `container:` mode with web's first container, which
/// starts first; when web is replaced, the probe (whose network went with it) is recreated after
/// it, naming why; applied exactly, nothing more.
#[test]
fn a_service_in_anothers_network_namespace_follows_it() {
    let fixture = with_probe("restart: always", "service:web");
    let probe = desired(&fixture).hosts["app-1"]
        .containers
        .iter()
        .find(|c| c.service == "probe")
        .cloned()
        .expect("probe");
    assert_eq!(
        probe.networks,
        BTreeMap::from([("container:shop-web-1".to_owned(), Vec::new())])
    );
    assert_eq!(
        probe.depends_on.get("shop-web-1"),
        Some(&hoist_core::stack::ConditionKind::ServiceStarted)
    );
    assert_eq!(container_changes(&fixture, &fixture), []);
    let changed = with_probe("restart: always\n    cap_add: [NET_ADMIN]", "service:web");
    assert_eq!(
        container_changes(&fixture, &changed),
        [
            (
                "shop-web-1".to_owned(),
                "Recreate".to_owned(),
                vec!["cap_add".to_owned()]
            ),
            (
                "shop-probe-1".to_owned(),
                "Recreate".to_owned(),
                vec!["network_mode".to_owned()]
            ),
        ]
    );
    let cases = [
        (
            with_probe("", "service:web").replace(
                "network_mode: service:web\n",
                "network_mode: service:web\n    ports: [\"9000:9000\"]\n",
            ),
            "services.probe.ports: with `network_mode: service:web` the container uses `web`'s network: publish the ports there",
        ),
        (
            with_probe("", "service:web").replace(
                "network_mode: service:web\n",
                "network_mode: service:web\n    hostname: probe\n",
            ),
            "services.probe.hostname: with `network_mode: service:web` the network is `web`'s: set `hostname` there",
        ),
        (
            with_probe("", "service:nope"),
            "services.probe.network_mode: no service named `nope` in this stack",
        ),
        (
            with_probe("", "service:probe"),
            "services.probe.network_mode: a service cannot join its own network namespace",
        ),
        (
            with_probe("", "container:vpn"),
            "services.probe.network_mode: a container outside the stack, which hoist can neither start first nor follow: put its service in the stack and use `service:<name>`",
        ),
    ];
    assert_diagnosed(&cases);
}

/// Device requests as compose reads them: `gpus` for short (capability `gpu`), neither `count`
/// nor `device_ids` meaning all, and what cannot go together said where it is written.
#[test]
fn device_requests_are_decoded_as_compose_reads_them() {
    let requests = |yaml: &str| web_of(&with_web(yaml)).runtime.device_requests;
    let all_gpus = hoist_core::stack::DeviceRequest {
        count: Some(-1),
        capabilities: vec!["gpu".into()],
        ..Default::default()
    };
    assert_eq!(requests("gpus: all"), std::slice::from_ref(&all_gpus));
    assert_eq!(
        requests("deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}"),
        [all_gpus]
    );
    assert_eq!(
        requests("gpus: [{driver: nvidia, count: 2}]"),
        [hoist_core::stack::DeviceRequest {
            driver: "nvidia".into(),
            count: Some(2),
            capabilities: vec!["gpu".into()],
            ..Default::default()
        }]
    );
    for (yaml, want) in [
        (
            "deploy: {resources: {reservations: {devices: [{count: 1, device_ids: [\"0\"], capabilities: [gpu]}]}}}",
            "services.web.deploy.resources.reservations.devices[0].count: `count` and `device_ids` exclude each other (as in compose)",
        ),
        (
            "deploy: {resources: {reservations: {devices: [{driver: nvidia}]}}}",
            "services.web.deploy.resources.reservations.devices[0]",
        ),
        (
            "gpus: some",
            "services.web.gpus: \"some\" is neither `all` nor a list of device requests",
        ),
    ] {
        let diags = diagnostics_of(&with_web(yaml));
        assert!(
            diags.iter().any(|d| d.contains(want)),
            "{want}\nnot among:\n{}",
            diags.join("\n")
        );
    }
}

/// Every change of planning `fixture` against hosts converged on `observed_fixture`, as
/// `kind name action reasons`, and the plan's notes.
fn all_changes(observed_fixture: &str, fixture: &str) -> (Vec<String>, Vec<String>) {
    let plan = converged_plan(observed_fixture, fixture);
    let changes = plan
        .hosts
        .iter()
        .flat_map(|h| h.changes.iter())
        .map(|c| {
            let reasons: Vec<String> = c
                .reasons
                .iter()
                .map(|r| format!("{}: {}", r.field, r.detail))
                .collect();
            format!(
                "{} {} {:?} [{}]",
                c.kind.as_str(),
                c.name,
                c.action,
                reasons.join("; ")
            )
        })
        .collect();
    let notes = plan.hosts.iter().flat_map(|h| h.notes.clone()).collect();
    (changes, notes)
}

/// A network created with other options is recreated, naming each, with its containers (taken
/// off it, then recreated on the new one); what the engine chose (a pool, a gateway) is not a
/// difference. A volume is never recreated (its data): the plan says what to do.
#[test]
fn a_network_or_volume_option_change_is_planned_by_key() {
    let net = |opts: &str| {
        with_web("networks: [front]").replace(
            "volumes:\n  data: {}\n",
            &format!("volumes:\n  data: {{}}\nnetworks:\n  front:\n{opts}"),
        )
    };
    let pooled = net("    ipam: {config: [{subnet: 172.28.0.0/24}]}\n");
    let (changes, _) = all_changes(&pooled, &pooled);
    assert_eq!(changes, Vec::<String>::new());
    let plain = net("    {}\n");
    assert_eq!(all_changes(&plain, &plain).0, Vec::<String>::new());
    let (changes, _) = all_changes(
        &pooled,
        &net(
            "    internal: true\n    driver_opts: {com.docker.network.bridge.name: br-front}\n    ipam: {config: [{subnet: 172.29.0.0/24, gateway: 172.29.0.254}]}\n",
        ),
    );
    assert_eq!(
        changes,
        [
            "network shop_front Recreate [internal: false -> true; driver_opts.com.docker.network.bridge.name: unset -> br-front; ipam: 172.28.0.0/24 -> 172.29.0.0/24 gateway 172.29.0.254]",
            "container shop-web-1 Recreate [networks: network shop_front is recreated]",
        ]
    );
    let (changes, notes) = all_changes(
        PROJECT,
        &PROJECT.replace(
            "  data: {}\n",
            "  data:\n    driver_opts: {type: tmpfs, device: tmpfs}\n",
        ),
    );
    assert_eq!(changes, Vec::<String>::new());
    assert_eq!(
        notes,
        [
            "volume shop_data was created with other options (driver_opts.device: unset -> tmpfs, driver_opts.type: unset -> tmpfs): hoist does not recreate a volume, whose data would go; move the data, remove the volume (`docker volume rm shop_data`) and apply again"
        ]
    );
}

#[test]
fn a_runtime_key_set_to_the_engines_default_plans_nothing() {
    for yaml in [
        "shm_size: 64m",
        "privileged: false",
        "runtime: runc",
        "expose: [\"80\"]",
        "deploy: {replicas: 1, mode: replicated}",
    ] {
        assert_eq!(container_changes(PROJECT, &with_web(yaml)), [], "{yaml}");
    }
}

#[test]
fn compose_keys_hoist_refuses_say_why() {
    let fixture = with_web(
        "deploy: {replicas: 3, placement: {constraints: [node.role == manager]}, update_config: {parallelism: 1}}\n    network_mode: host\n    links: [db]\n    build: {context: ., ssh: [\"default=~/.ssh/id_ed25519\"]}",
    )
    .replace("name: shop\n", "version: \"3.8\"\nname: shop\n");
    expect![[r#"
        [
            "warning[unsupported]: stacks/app.yml:1:10: version: `version` is obsolete: compose ignores it, and so does hoist (it can go)",
            "error[invalid-value]: stacks/app.yml:16:3: services.web.ports: 3 replicas cannot all publish host port 8080: leave the host port out (the engine picks one per replica) or run one replica",
            "error[invalid-value]: stacks/app.yml:16:3: services.web.ports: with `network_mode: host` there is nothing to publish: the container uses the host's ports (host) or none",
            "error[unsupported]: stacks/app.yml:18:38: services.web.deploy.placement: swarm's: hoist places services by the stack's `x-hoist.hosts`",
            "error[unsupported]: stacks/app.yml:20:12: services.web.links: legacy: the containers of a stack reach each other by service name on its networks",
            "error[unknown-reference]: stacks/app.yml:21:12: services.web.build: no Dockerfile in build context \".\" (/project/stacks)",
            "error[unsupported]: stacks/app.yml:21:31: services.web.build.ssh[0]: hoist forwards the SSH agent it runs with, not a key file: add the key to that agent (`ssh-add ~/.ssh/id_ed25519`) and write `default`",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&fixture));
}

/// `deploy.update_config` is how apply replaces the containers: decoded, out of the hash (a new
/// way of updating recreates nothing), and what two containers side by side cannot share is
/// refused for start-first.
#[test]
fn update_config_is_decoded_kept_out_of_the_hash_and_checked() {
    let fixture = with_web(
        "deploy: {update_config: {order: start-first, parallelism: 2, delay: 2s, monitor: 1500ms, failure_action: pause}}\n    x-hoist: {reload: SIGHUP}",
    )
    .replace("    ports:\n      - \"8080:80\"\n", "");
    let web = web_of(&fixture);
    assert_eq!(
        web.update,
        UpdateConfig {
            order: UpdateOrder::StartFirst,
            parallelism: 2,
            delay_s: 2,
            monitor_s: 2,
            failure_action: FailureAction::Pause,
        }
    );
    assert_eq!(web.reload.as_deref(), Some("SIGHUP"));
    let plain = PROJECT.replace("    ports:\n      - \"8080:80\"\n", "");
    assert_eq!(
        container_changes(&plain, &fixture),
        [],
        "nothing to recreate"
    );

    expect![[r#"
        [
            "error[invalid-value]: stacks/app.yml:15:3: services.web.deploy.update_config.order: start-first runs two containers at once, and host port 8080 cannot be bound by both: reach the service through its network (a proxy), or use stop-first",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&with_web(
        "deploy: {update_config: {order: start-first}}",
    )));
    expect![[r#"
        [
            "error[invalid-value]: stacks/app.yml:17:37: services.web.deploy.update_config.order: \"sideways\" is not an update order (stop-first, start-first)",
            "error[unsupported]: stacks/app.yml:17:63: services.web.deploy.update_config.failure_action: hoist never goes on past a container that failed its gate: use rollback or pause",
            "error[unsupported]: stacks/app.yml:17:92: services.web.deploy.update_config.max_failure_ratio: hoist stops a service's update at its first failure: only 0 is supported",
            "error[unknown-key]: stacks/app.yml:17:97: services.web.deploy.update_config.speed: unknown key `speed`",
            "error[invalid-value]: stacks/app.yml:18:23: services.web.x-hoist.reload: \"SIGNOPE\" is not a signal to reload on (like SIGHUP or SIGUSR2)",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&with_web(
        "deploy: {update_config: {order: sideways, failure_action: continue, max_failure_ratio: 0.5, speed: 3}}\n    x-hoist: {reload: SIGNOPE}",
    )));
}

#[test]
fn a_plays_serial_is_a_number_of_hosts_or_a_percentage() {
    let with = |v: &str| {
        PROJECT.replace(
            "  hosts: app\n  steps:",
            &format!("  hosts: app\n  serial: {v}\n  steps:"),
        )
    };
    let d = desired(&with("\"50%\""));
    assert_eq!(
        d.serial
            .get(&0)
            .map(|s| (s.play.as_str(), s.serial, s.hosts.clone())),
        Some((
            "app",
            playbook::Serial::Percent(50),
            vec!["app-1".to_owned()]
        ))
    );
    expect![[r#"
        [
            "error[invalid-value]: playbooks/site.yml:3:11: [0].serial: \"0\" is not a number of hosts or a percentage (like 1 or 30%)",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&with("0")));
}

/// The `.env` beside a stack supplies interpolation values as compose reads them, below the
/// inventory's variables; a value whose key names a secret is masked.
#[test]
fn a_dotenv_beside_the_stack_supplies_interpolation_values() {
    let fixture = PROJECT
        .replace("    image: nginx:1.27\n", "    image: nginx:${WEB_TAG}\n")
        .replace(
            "      POSTGRES_DB: shop\n",
            "      POSTGRES_DB: shop\n      MODE: ${mode}\n      POSTGRES_PASSWORD: ${DB_PASSWORD}\n",
        )
        .replace(
            "//- stacks/app.yml\n",
            "//- stacks/.env\n# compose reads this file\nWEB_TAG=1.27-alpine\nmode=from-dotenv\nDB_PASSWORD=dotenv-s3cret\n//- stacks/app.yml\n",
        );
    let opts = options(&fixture);
    let source = opts.source.clone();
    let mut diags = Diagnostics::new();
    let project = project::load(opts, &mut diags).expect("loads");
    let book = playbook::load(
        &source,
        root(),
        &root().join("playbooks/site.yml"),
        &mut diags,
    )
    .expect("site.yml");
    let desired = project.desired(&book, None, &mut diags);
    assert!(diags.is_empty(), "{:#?}", diags.sorted());
    let containers = &desired.hosts["app-1"].containers;
    let web = containers.iter().find(|c| c.service == "web").expect("web");
    assert_eq!(web.image, "nginx:1.27-alpine");
    let db = containers.iter().find(|c| c.service == "db").expect("db");
    assert_eq!(db.env["MODE"], "prod", "the inventory's variable wins");
    assert_eq!(
        project.redactor.redact("pw dotenv-s3cret"),
        "pw (sensitive)"
    );
}

/// `build.target` picks a stage of a multi-stage Dockerfile, and the image's hash covers it: a
/// new target rebuilds the image.
#[test]
fn a_build_target_is_built_and_hashed() {
    let base = PROJECT
        .replace(
            "  web:\n    image: nginx:1.27\n",
            "  web:\n    image: shop/web:1\n    build: {context: ./img, target: runtime}\n",
        )
        .replace(
            "//- stacks/app.yml\n",
            "//- stacks/img/Dockerfile\nFROM scratch AS build\nFROM scratch AS runtime\n//- stacks/app.yml\n",
        );
    let source = |d: &Desired| d.hosts["app-1"].images["shop/web:1"].source.clone();
    let runtime = source(&desired(&base));
    let debug = source(&desired(&base.replace("target: runtime", "target: build")));
    let hash = |s: &hoist_core::desired::ImageSource| match s {
        hoist_core::desired::ImageSource::Build {
            target,
            context_hash,
            ..
        } => (target.clone(), context_hash.clone()),
        other => panic!("{other:?}"),
    };
    let (a, b) = (hash(&runtime), hash(&debug));
    assert_eq!(a.0.as_deref(), Some("runtime"));
    assert_eq!(b.0.as_deref(), Some("build"));
    assert_ne!(a.1, b.1, "the target is in the image's hash");
}

/// [`PROJECT`] with web built from `./img` with `build` (its other keys), a top-level secret
/// `npm_token` from `./token.txt` (holding `token`) and `extra` top-level secrets.
fn built_with(build: &str, token: &str, extra: &str) -> String {
    PROJECT
        .replace(
            "  web:\n    image: nginx:1.27\n",
            &format!("  web:\n    image: shop/web:1\n    build: {{context: ./img, {build}}}\n"),
        )
        .replace(
            "volumes:\n  data: {}\n",
            &format!("volumes:\n  data: {{}}\nsecrets:\n  npm_token: {{file: ./token.txt}}\n{extra}"),
        )
        .replace(
            "//- stacks/app.yml\n",
            &format!("//- stacks/img/Dockerfile\nFROM scratch\n//- stacks/token.txt\n{token}\n//- stacks/app.yml\n"),
        )
}

/// `build.secrets` and `build.ssh` are what the build's BuildKit session serves: a secret by the
/// id the Dockerfile mounts (its `target`, else its name) with the top-level secret's bytes, the
/// agent as `default`. The image hash covers which secrets and agent, never a secret's value,
/// and the value is in no serialised plan.
#[test]
fn build_secrets_and_the_ssh_agent_are_served_by_id_and_hashed_without_their_values() {
    use hoist_core::desired::{BuildSession, ImageSource};
    let build = "secrets: [npm_token, {source: npm_token, target: npmrc}], ssh: [default]";
    let image = |fixture: &str| desired(fixture).hosts["app-1"].images["shop/web:1"].clone();
    let parts = |fixture: &str| match image(fixture).source {
        ImageSource::Build {
            session,
            context_hash,
            ..
        } => (session, context_hash),
        other => panic!("{other:?}"),
    };
    let (session, hash) = parts(&built_with(build, "s3cret-token-1", ""));
    let served: Vec<_> = session
        .secrets
        .iter()
        .map(|s| (s.id.as_str(), s.source.as_str(), s.content.expose().text()))
        .collect();
    assert_eq!(
        served,
        [
            ("npm_token", "npm_token", Some("s3cret-token-1\n")),
            ("npmrc", "npm_token", Some("s3cret-token-1\n")),
        ]
    );
    assert!(session.ssh);
    let json = serde_json::to_string(&image(&built_with(build, "s3cret-token-1", "")))
        .expect("serialises");
    assert!(!json.contains("s3cret-token-1"), "{json}");
    assert!(
        json.contains(r#""secrets":[{"id":"npm_token","source":"npm_token"}"#),
        "{json}"
    );

    let (_, rotated) = parts(&built_with(build, "s3cret-token-2", ""));
    assert_eq!(hash, rotated, "a secret's value is not in the image hash");
    let (_, without_ssh) = parts(&built_with(
        "secrets: [npm_token, {source: npm_token, target: npmrc}]",
        "s3cret-token-1",
        "",
    ));
    assert_ne!(hash, without_ssh, "the agent is in the image hash");
    let (_, other_id) = parts(&built_with(
        "secrets: [npm_token, {source: npm_token, target: npm}], ssh: [default]",
        "s3cret-token-1",
        "",
    ));
    assert_ne!(hash, other_id, "a secret's id is in the image hash");
    let (none, plain) = parts(&built_with("dockerfile: Dockerfile", "s3cret-token-1", ""));
    assert_eq!(none, BuildSession::default());
    assert_ne!(hash, plain);
    // The map form of `ssh` names the same agent, and so does an empty key file.
    for ssh in ["ssh: {default: }", "ssh: [\"default=\"]"] {
        let (session, _) = parts(&built_with(ssh, "t", ""));
        assert!(session.ssh, "{ssh}");
    }
}

/// One build goes to every host: a build secret whose value differs by host cannot be built
/// once, and says so; the plan says what a build reads before apply runs it.
#[test]
fn a_build_is_the_same_for_every_host_and_its_plan_says_what_it_reads() {
    let two_hosts = |token_b: &str| {
        built_with(
            "secrets: [npm_token, host_token]",
            "t",
            "  host_token: {environment: token}\n",
        )
        .replace(
            "  app-1:\n    address: 10.0.0.1\n",
            &format!(
                "  app-1:\n    address: 10.0.0.1\n    vars: {{token: a-token}}\n  app-2:\n    address: 10.0.0.2\n    vars: {{token: {token_b}}}\n"
            ),
        )
        .replace("    hosts: [app-1]\n", "    hosts: [app-1, app-2]\n")
    };
    let same = desired(&two_hosts("a-token"));
    assert_eq!(
        same.hosts["app-1"].images["shop/web:1"],
        same.hosts["app-2"].images["shop/web:1"]
    );
    assert_diagnosed(&[(
        two_hosts("b-token"),
        "services.web.image: image shop/web:1 would be built differently for hosts app-1 and app-2 (its build args, files or secrets differ), and one build goes to every host: give each variant a reference of its own (`image: name:${variant}`)",
    )]);

    let (changes, _) = all_changes(
        PROJECT,
        &built_with("secrets: [npm_token], ssh: [default]", "t", ""),
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("image shop/web:1 Build")
                && c.contains("the build reads secret `npm_token`, the SSH agent hoist runs with")),
        "{changes:#?}"
    );
}

#[test]
fn build_secrets_and_ssh_that_cannot_be_served_are_located_errors() {
    let cases = [
        (
            built_with("secrets: [npm_tokn]", "t", ""),
            "services.web.build.secrets[0]: no `npm_tokn` under the top-level `secrets`",
        ),
        (
            built_with("secrets: [{source: npm_token, mode: \"0400\"}]", "t", ""),
            "services.web.build.secrets[0].mode: a build secret's owner and mode are the Dockerfile's: `RUN --mount=type=secret,id=...,mode=...`",
        ),
        (
            built_with(
                "secrets: [npm_token, {source: other, target: npm_token}]",
                "t",
                "  other: {file: ./token.txt}\n",
            ),
            "services.web.build.secrets[1]: two build secrets have the id `npm_token`",
        ),
        (
            built_with("ssh: [\"default=~/.ssh/id_ed25519\"]", "t", ""),
            "services.web.build.ssh[0]: hoist forwards the SSH agent it runs with, not a key file: add the key to that agent (`ssh-add ~/.ssh/id_ed25519`) and write `default`",
        ),
        (
            built_with("ssh: {deploy: ~/.ssh/deploy}", "t", ""),
            "services.web.build.ssh.deploy: hoist forwards one SSH agent, as `default`: mount it with `RUN --mount=type=ssh` (no id) rather than id `deploy`",
        ),
        (
            built_with("ssh: default", "t", ""),
            "services.web.build.ssh: expected a list (`[default]`) or a map",
        ),
        (
            built_with("ssh: {default: [key]}", "t", ""),
            "services.web.build.ssh.default: expected a key file's path, or nothing",
        ),
        (
            built_with("secrets: [{source: npm_tokn}]", "t", ""),
            "services.web.build.secrets[0].source: no `npm_tokn` under the top-level `secrets`",
        ),
    ];
    assert_diagnosed(&cases);
}

/// `secrets:` and `configs:` are shipped as files and mounted where compose mounts them; a
/// secret's file is private and owned by its user; a change recreates exactly the services that
/// mount it.
#[test]
fn secrets_and_configs_are_files_mounted_where_compose_mounts_them() {
    let fixture = with_web(
        "secrets: [db_pass, {source: api_key, target: key, uid: \"101\", mode: \"0440\"}]\n    configs: [{source: site, target: /etc/nginx/conf.d/site.conf}]",
    )
    .replace(
        "volumes:\n  data: {}\n",
        "volumes:\n  data: {}\nsecrets:\n  db_pass: {file: ./db_pass.txt}\n  api_key: {environment: mode}\nconfigs:\n  site: {file: ./conf/web.conf}\n",
    )
    .replace(
        "//- stacks/app.yml\n",
        "//- stacks/db_pass.txt\nhunter2-file-secret\n//- stacks/app.yml\n",
    );
    let d = desired(&fixture);
    let host = &d.hosts["app-1"];
    let file = |p: &str| {
        host.files
            .get(p)
            .unwrap_or_else(|| panic!("no {p}: {:?}", host.files.keys()))
    };
    let pass = file("/opt/hoist/shop/secrets/web/db_pass");
    assert_eq!((pass.mode, pass.sensitive), (0o400, true));
    assert_eq!(pass.content.text(), Some("hunter2-file-secret\n"));
    let key = file("/opt/hoist/shop/secrets/web/api_key");
    assert_eq!(
        (
            key.mode,
            key.owner.as_deref(),
            key.content.text().unwrap_or_default()
        ),
        (0o440, Some("101"), "prod")
    );
    let site = file("/opt/hoist/shop/configs/web/site");
    assert_eq!((site.mode, site.sensitive), (0o444, false));
    let web = host
        .containers
        .iter()
        .find(|c| c.service == "web")
        .expect("web");
    let mounts: Vec<(String, String, bool)> = web
        .mounts
        .iter()
        .filter(|m| m.source.contains("/secrets/") || m.source.contains("/configs/"))
        .map(|m| (m.source.clone(), m.target.clone(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "/opt/hoist/shop/configs/web/site".to_owned(),
                "/etc/nginx/conf.d/site.conf".to_owned(),
                true
            ),
            (
                "/opt/hoist/shop/secrets/web/db_pass".to_owned(),
                "/run/secrets/db_pass".to_owned(),
                true
            ),
            (
                "/opt/hoist/shop/secrets/web/api_key".to_owned(),
                "/run/secrets/key".to_owned(),
                true
            ),
        ]
    );
    // A new secret value: the one service that mounts it is recreated, for that file.
    let rotated = fixture.replace("hunter2-file-secret", "hunter3-file-secret");
    assert_eq!(
        container_changes(&fixture, &rotated),
        [(
            "shop-web-1".to_owned(),
            "Recreate".to_owned(),
            vec!["mounted file".to_owned()]
        )]
    );
    assert_eq!(container_changes(&fixture, &fixture), []);
}

#[test]
fn a_secret_of_a_named_user_is_readable_by_the_container_and_said_and_an_unknown_one_is_named() {
    let fixture = PROJECT
        .replace(
            "    image: postgres:17\n",
            "    image: postgres:17\n    user: postgres\n    secrets: [pw, nope]\n",
        )
        .replace(
            "volumes:\n  data: {}\n",
            "volumes:\n  data: {}\nsecrets:\n  pw: {environment: mode}\n  ext: {external: true}\n",
        );
    expect![[r#"
        [
            "warning[missing-key]: stacks/app.yml:8:15: services.db.secrets: secret `pw` is mounted readable by every user of the container, since user \"postgres\" has no number here: give the secret's `uid` (the user's id in the image) to make it that user's alone",
            "error[unknown-reference]: stacks/app.yml:8:19: services.db.secrets: no `nope` under the top-level `secrets`",
            "error[unsupported]: stacks/app.yml:31:19: secrets.ext.external: an external secret or config is swarm's: give its `file` or `environment`",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&fixture));
}

/// An anonymous volume (`- /path`) becomes the service's own volume, named after the service and
/// its target, so a recreate keeps its data (compose keeps it too); converged, it plans nothing.
#[test]
fn an_anonymous_volume_is_the_services_own() {
    let fixture = PROJECT.replace(
        "      - ./conf/web.conf:/etc/nginx/conf.d/web.conf:ro\n",
        "      - ./conf/web.conf:/etc/nginx/conf.d/web.conf:ro\n      - /var/cache/nginx\n",
    );
    let d = desired(&fixture);
    let host = &d.hosts["app-1"];
    let anon: Vec<&String> = host
        .volumes
        .keys()
        .filter(|v| v.starts_with("shop_web-"))
        .collect();
    assert_eq!(anon.len(), 1, "{:?}", host.volumes.keys());
    let web = host
        .containers
        .iter()
        .find(|c| c.service == "web")
        .expect("web");
    assert!(
        web.mounts.iter().any(|m| m.kind == "volume"
            && &&m.source == anon.first().expect("one")
            && m.target == "/var/cache/nginx"),
        "{:?}",
        web.mounts
    );
    assert_eq!(container_changes(&fixture, &fixture), []);
}

/// `deploy.replicas` runs several containers of a service, named and labelled as compose names
/// them; a dependency waits for every replica; converged, nothing to do. Replicas cannot share a
/// published host port or a `container_name`.
#[test]
fn replicas_are_containers_named_as_compose_names_them() {
    let fixture = PROJECT.replace(
        "    image: postgres:17\n",
        "    image: postgres:17\n    deploy: {replicas: 2}\n",
    );
    let d = desired(&fixture);
    let host = &d.hosts["app-1"];
    let names: Vec<&str> = host.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["shop-db-1", "shop-db-2", "shop-web-1"]);
    let second = &host.containers[1];
    assert_eq!(
        second.engine_labels()["com.docker.compose.container-number"],
        "2"
    );
    let web = &host.containers[2];
    assert_eq!(
        web.waits_for().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["shop-db-1", "shop-db-2"]
    );
    assert_eq!(container_changes(&fixture, &fixture), []);
    // One more replica: one container to create, the others (and those that wait) left alone.
    let three = fixture.replace("replicas: 2", "replicas: 3");
    assert_eq!(
        container_changes(&fixture, &three),
        [("shop-db-3".to_owned(), "Create".to_owned(), vec![])]
    );
    // One fewer: the surplus replica goes as part of converging, not left for --prune.
    assert_eq!(
        container_changes(&fixture, &fixture.replace("replicas: 2", "replicas: 1")),
        [(
            "shop-db-2".to_owned(),
            "Delete".to_owned(),
            vec!["replicas".to_owned()]
        )]
    );
    let clash = with_web("deploy: {replicas: 2}\n    container_name: the-web");
    expect![[r#"
        [
            "error[invalid-value]: stacks/app.yml:15:3: services.web.container_name: 2 replicas cannot share one `container_name` (as in compose)",
            "error[invalid-value]: stacks/app.yml:15:3: services.web.ports: 2 replicas cannot all publish host port 8080: leave the host port out (the engine picks one per replica) or run one replica",
        ]
    "#]]
    .assert_debug_eq(&diagnostics_of(&clash));
}
