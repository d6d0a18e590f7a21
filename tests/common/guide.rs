//! The `hoist` commands a guide shows: its indented lines that start with `hoist `, split into
//! shell words after `hoist`, a trailing `# comment` left out. Shared by the test that parses
//! every guide's commands (src/cli.rs) and the e2e step that runs the operator guide's.

/// Each command of `text` with its line number (from 1).
pub fn commands(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let command = line.strip_prefix("    hoist ")?;
            let command = command.split(" #").next().unwrap_or_default();
            let words = shlex::split(command)
                .unwrap_or_else(|| panic!("line {}: `hoist {command}` is not shell words", n + 1));
            Some((n + 1, words))
        })
        .collect()
}
