//! Rendered templates, snapshot-tested: the demo fixture's templates for one host, with the
//! Ansible filters they use.

use std::path::PathBuf;

use expect_test::expect_file;
use hoist_core::diag::Diagnostics;
use hoist_core::project::{self, LoadOptions};
use hoist_core::template;
use hoist_core::vars::SecretsMode;

#[test]
fn demo_templates_render_per_host() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/demo");
    let mut diags = Diagnostics::new();
    let opts = LoadOptions {
        root: root.clone(),
        inventory: "inventory/test".into(),
        extra_vars: vec![],
        secrets: SecretsMode::Optional,
        keyring: None,
        source: hoist_core::source::Source::disk(),
        home: None,
    };
    let p = project::load(opts, &mut diags).expect("loads");
    let mut out = String::new();
    for (host, name) in [
        ("web-2", "app.conf.j2"),
        ("db-1", "db.env.j2"),
        ("db-1", "init.sql.j2"),
    ] {
        let ctx = p.vars[host].context();
        let text = template::render_file(&p.env, name, &ctx).expect("renders");
        out.push_str(&format!("== {name} for {host}\n{text}"));
    }
    expect_file!["snapshots/demo_templates.txt"].assert_eq(&out);
}

#[test]
fn undefined_variables_name_template_and_line() {
    let r = hoist_core::secret::Redactor::new();
    let env = template::environment(None, &r);
    let mut env = env;
    env.add_template_owned("x.conf.j2", "a\nb {{ nope }}\n")
        .expect("template");
    let err = template::render_file(
        &env,
        "x.conf.j2",
        &template::to_value(serde_json::json!({})),
    )
    .expect_err("undefined");
    let mut diags = Diagnostics::new();
    let origin = template::Origin {
        file: hoist_core::diag::SourceName("templates/x.conf.j2".into()),
        line_offset: 0,
        field: String::new(),
    };
    template::report(&err, &origin, &mut diags);
    let shown: Vec<String> = diags.sorted().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "error[undefined-variable]: templates/x.conf.j2:2: undefined variable: `nope` is undefined"
        ]
    );
}
