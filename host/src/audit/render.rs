//! Closures and their differences as text for a terminal.

use super::{Change, Difference, Node, Version};
use crate::sandbox::SandboxMode;

/// The closure as an indented tree, one node per line.
pub fn render(root: &Node) -> String {
    let mut out = String::new();
    let mut line = format!("target {}  {}", root.name, root.hash);
    if let Some(e) = &root.entry {
        line.push_str(&format!("  {}", e.display()));
    }
    if let Some(s) = &root.sandbox {
        line.push_str(&format!("  ({s})"));
    }
    for e in &root.executors {
        line.push_str(&format!("  [ran on {e}]"));
    }
    out.push_str(&line);
    out.push('\n');
    fn walk(n: &Node, indent: &str, out: &mut String) {
        for (i, c) in n.children.iter().enumerate() {
            let last = i + 1 == n.children.len();
            let mut line = format!(
                "{indent}{} {} {}",
                if last { "└──" } else { "├──" },
                c.kind,
                c.name
            );
            if !c.source.is_empty() && c.source != c.name {
                line.push_str(&format!("  {}", c.source));
            }
            if !c.version.is_empty() {
                line.push_str(&format!("  {}", c.version));
            }
            if !c.hash.is_empty() {
                line.push_str(&format!("  {}", c.hash));
            }
            if let Some(o) = c.outcome {
                line.push_str(&format!("  ({})", o.as_str()));
            }
            if let Some(s) = &c.sandbox
                && *s != SandboxMode::Hermetic
            {
                line.push_str(&format!("  (sandbox {s}: NOT HERMETIC)"));
            }
            for t in &c.tools {
                line.push_str(&format!("  [tool {t}]"));
            }
            for e in &c.executors {
                line.push_str(&format!("  [ran on {e}]"));
            }
            out.push_str(&line);
            out.push('\n');
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            walk(c, &deeper, out);
        }
    }
    walk(root, "", &mut out);
    out
}

/// The differences, one per line.
pub fn render_diff(diffs: &[Difference]) -> String {
    if diffs.is_empty() {
        return "the two input closures are identical\n".into();
    }
    let show = |v: &Option<Version>| {
        v.as_ref().map_or(String::new(), |v| {
            [&v.source, &v.version, &v.hash]
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    diffs
        .iter()
        .map(|d| match d.change {
            Change::Added => format!("added    {}  {}\n", d.path, show(&d.new)),
            Change::Removed => format!("removed  {}  {}\n", d.path, show(&d.old)),
            Change::Changed => {
                format!("changed  {}  {} → {}\n", d.path, show(&d.old), show(&d.new))
            }
        })
        .collect()
}
