//! hoist's pure core: everything between the files in a project and a reviewable plan.
//!
//! Inputs (inventory, variables, secrets, templates, stacks, playbooks) are loaded into validated
//! domain types with every problem reported as a located [`diag::Diagnostic`]. The [`desired`] state
//! of each host is computed from them; [`plan::diff`] compares it with an [`observed`] state and yields
//! a [`plan::Plan`], which [`render`] shows as text or JSON. Nothing here does network IO, spawns a
//! process or needs an async runtime: a test over `cargo tree` keeps it that way.

pub mod check;
pub mod desired;
pub mod diag;
pub mod inventory;
pub mod observed;
pub mod pki;
pub mod plan;
pub mod playbook;
pub mod project;
pub mod release;
pub mod render;
pub mod scram;
pub mod secret;
pub mod source;
pub mod sql;
pub mod stack;
pub mod template;
pub mod vars;
pub mod vault;
pub mod yaml;
