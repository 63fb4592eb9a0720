//! `certs-example/README.md` as a reader uses it: every ```` ```sh ```` block runs as written with
//! `sh -e` from inside `certs-example/`, succeeds, and leaves the directory as it was. The
//! commands that check dates carry `-attime` (the set's verification time, which
//! `certs_example.rs` keeps in step with the committed set), so they keep passing after the set
//! has expired. A block fenced ```` ```sh no-run ```` is shown but not run: only the command that
//! regenerates the set may be one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use iomt_tests::require_tool;

/// A fenced code block: its info string (`sh`, `sh no-run`, …) and its text.
struct Block {
    info: String,
    text: String,
    /// 1-based line of the opening fence, for messages.
    line: usize,
}

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../certs-example")
}

fn readme() -> String {
    std::fs::read_to_string(example_dir().join("README.md")).unwrap()
}

/// The fenced blocks of a Markdown text, in order; indented fences (in list items) included.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some(Block {
                        info: info.trim().to_owned(),
                        text: String::new(),
                        line: index + 1,
                    });
                }
            }
            Some(block) => {
                if trimmed == "```" {
                    out.extend(open.take());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block in the README");
    out
}

/// The commands of the blocks that are run: one per line, continuation lines joined.
fn commands(blocks: &[Block]) -> Vec<String> {
    let mut out = Vec::new();
    for block in blocks.iter().filter(|b| b.info == "sh") {
        let mut current = String::new();
        for line in block.text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => current.push_str(part),
                None => {
                    current.push_str(line);
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    out
}

/// The files and directories under `dir`, by relative path.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

#[test]
fn readme_sh_blocks_run_as_written_in_certs_example() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let dir = example_dir();
    let blocks = blocks(&readme());
    let run: Vec<&Block> = blocks.iter().filter(|b| b.info == "sh").collect();
    assert!(run.len() >= 5, "the README's sh blocks were not found");
    let before = listing(&dir);
    for block in run {
        let output = Command::new("sh")
            .args(["-e", "-x", "-c", &block.text])
            .current_dir(&dir)
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "certs-example/README.md, the sh block at line {} fails ({}):\n{}\nstdout:\n{}\nstderr \
             (each command after `+`):\n{}",
            block.line,
            output.status,
            block.text,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
    assert_eq!(
        listing(&dir),
        before,
        "the README's commands write nothing into certs-example/"
    );
}

#[test]
fn readme_date_checks_use_the_fixed_time_and_only_regeneration_is_not_run() {
    let blocks = blocks(&readme());
    for block in &blocks {
        let runnable = block.info == "sh";
        let shown = block.info == "sh no-run";
        assert!(
            runnable || shown || !block.info.starts_with("sh"),
            "line {}: `{}` is neither `sh` (run) nor `sh no-run`",
            block.line,
            block.info
        );
        assert!(
            !shown
                || block
                    .text
                    .trim()
                    .starts_with("REGENERATE_CERTS_EXAMPLE=1 cargo test"),
            "line {}: only the regeneration command may be left unrun:\n{}",
            block.line,
            block.text
        );
    }
    let commands = commands(&blocks);
    let checks_dates = |command: &&String| {
        command.starts_with("openssl verify")
            || (command.starts_with("openssl ocsp") && !command.contains("-noverify"))
    };
    let dated: Vec<&String> = commands.iter().filter(checks_dates).collect();
    assert!(!dated.is_empty(), "the README verifies something");
    for command in dated {
        assert!(
            command.contains("-attime "),
            "this README command checks dates against the clock, so it fails once the set \
             expires; give it -attime like the others:\n{command}"
        );
    }
}
