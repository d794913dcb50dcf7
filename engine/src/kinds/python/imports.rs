//! Which of the `.py` files beside a script the script needs: the modules
//! its `import` statements reach, transitively. Only those are bundled and
//! digested, so editing a sibling script (another step's) neither re-runs
//! this step nor runs that script while this one is built.
//!
//! The scan reads statements line by line rather than parsing Python: it
//! may find an import that is not one (text in a docstring), which only
//! bundles a file more, but it must not miss one. A module that imports by
//! name at run time (`importlib`, `__import__`) could reach any file, so
//! then every file is needed.

use std::collections::{BTreeMap, BTreeSet};

/// The modules a source imports, as dotted names (each name's parents are
/// implied: `a.b` imports `a` first), relative imports resolved against
/// `package` (the dotted package the source is in; empty at the top).
/// `None` when the source imports by name at run time.
pub(super) fn imported_modules(source: &str, package: &str) -> Option<Vec<String>> {
    if source.contains("importlib") || source.contains("__import__") {
        return None;
    }
    let mut found = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let mut statement = line.to_owned();
        // A parenthesised or backslash-continued import goes on.
        while is_import(&statement)
            && (statement.trim_end().ends_with('\\') || statement.matches('(').count() > statement.matches(')').count())
        {
            let Some(next) = lines.next() else { break };
            statement = format!("{} {next}", statement.trim_end().trim_end_matches('\\'));
        }
        for part in statement.split(';') {
            found.extend(statement_imports(part.trim(), package));
        }
    }
    Some(found)
}

fn is_import(statement: &str) -> bool {
    statement.split(';').any(|part| {
        let part = part.trim_start();
        part.starts_with("import ") || part.starts_with("from ")
    })
}

/// The modules one statement imports (none when it is not an import).
fn statement_imports(statement: &str, package: &str) -> Vec<String> {
    let names = |list: &str| -> Vec<String> {
        list.trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
            .split(',')
            .filter_map(|item| item.split_whitespace().next())
            .filter(|name| name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.'))
            .map(str::to_owned)
            .collect()
    };
    if let Some(list) = statement.strip_prefix("import ") {
        return names(list);
    }
    let Some(rest) = statement.strip_prefix("from ") else { return Vec::new() };
    let Some((module, list)) = rest.split_once(" import ") else { return Vec::new() };
    let module = module.trim();
    let dots = module.len() - module.trim_start_matches('.').len();
    let base = if dots == 0 {
        module.to_owned()
    } else {
        // `from . import x` in package `a.b` is `a.b.x`; each further dot goes up one package.
        let mut parts: Vec<&str> = package.split('.').filter(|part| !part.is_empty()).collect();
        parts.truncate(parts.len().saturating_sub(dots - 1));
        let relative = &module[dots..];
        parts.into_iter().chain((!relative.is_empty()).then_some(relative)).collect::<Vec<_>>().join(".")
    };
    // `from a import b` imports `a`, and `a.b` when `b` is a submodule.
    let mut found: Vec<String> = names(list)
        .into_iter()
        .filter(|name| name != "*")
        .map(|name| if base.is_empty() { name } else { format!("{base}.{name}") })
        .collect();
    if !base.is_empty() {
        found.push(base);
    }
    found
}

/// The files (relative paths, among `available`) that `script` needs: the
/// modules it imports, their packages' `__init__.py` files, and what those
/// import in turn. `read` gives a file's source.
pub(super) fn needed(
    script_source: &str,
    available: &[String],
    mut read: impl FnMut(&str) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    let by_module: BTreeMap<String, &String> = available.iter().map(|path| (module_name(path), path)).collect();
    let mut needed = BTreeSet::new();
    let Some(mut pending) = imported_modules(script_source, "") else { return Ok(available.to_vec()) };
    while let Some(module) = pending.pop() {
        // Importing `a.b.c` runs `a`, `a.b` and `a.b.c`.
        let parts: Vec<&str> = module.split('.').collect();
        for end in 1..=parts.len() {
            let Some(&path) = by_module.get(&parts[..end].join(".")) else { continue };
            if !needed.insert(path.clone()) {
                continue;
            }
            let package = package_of(path);
            match imported_modules(&read(path)?, &package) {
                Some(more) => pending.extend(more),
                None => return Ok(available.to_vec()),
            }
        }
    }
    Ok(needed.into_iter().collect())
}

/// The importable name of a bundled file: `helper.py` is `helper`,
/// `pkg/__init__.py` is `pkg`, `pkg/sub.py` is `pkg.sub`.
pub(super) fn module_name(path: &str) -> String {
    let path = path.trim_end_matches(".py");
    path.strip_suffix("/__init__").unwrap_or(path).replace('/', ".")
}

/// The package a file's relative imports resolve against.
fn package_of(path: &str) -> String {
    if path.ends_with("/__init__.py") {
        return module_name(path);
    }
    path.rsplit_once('/').map(|(dir, _)| dir.replace('/', ".")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_form_of_import() {
        let source = "\
import os, helper as h
from pkg.sub import thing, other as o
if True:
    import late  # inside a block
def f():
    from . import ignored_at_top
from tools import (
    first,
    second,
)
from shapes \\
    import circle
x = 1; import after_semicolon
";
        let found = imported_modules(source, "").unwrap();
        for expected in [
            "os",
            "helper",
            "pkg.sub",
            "pkg.sub.thing",
            "pkg.sub.other",
            "late",
            "ignored_at_top",
            "tools",
            "tools.first",
            "tools.second",
            "shapes",
            "shapes.circle",
            "after_semicolon",
        ] {
            assert!(found.iter().any(|name| name == expected), "{expected} in {found:?}");
        }
        assert!(!found.iter().any(|name| name == "h" || name == "o"), "aliases are not modules: {found:?}");
    }

    #[test]
    fn resolves_relative_imports_against_the_package() {
        let found = imported_modules("from . import a\nfrom .b import c\nfrom .. import top\n", "pkg.inner").unwrap();
        assert_eq!(found, ["pkg.inner.a", "pkg.inner", "pkg.inner.b.c", "pkg.inner.b", "pkg.top", "pkg"]);
    }

    #[test]
    fn importing_by_name_at_run_time_needs_everything() {
        assert_eq!(imported_modules("import importlib\n", ""), None);
        let available = vec!["a.py".to_owned(), "b.py".to_owned()];
        let sources = |path: &str| Ok(if path == "a.py" { "__import__('b')".to_owned() } else { String::new() });
        assert_eq!(needed("import a\n", &available, sources).unwrap(), available);
    }

    #[test]
    fn needs_the_transitive_imports_and_their_packages_only() {
        let available: Vec<String> =
            ["helper.py", "shared.py", "sibling_step.py", "pkg/__init__.py", "pkg/sub.py", "pkg/unused.py"]
                .map(str::to_owned)
                .to_vec();
        let sources = |path: &str| {
            Ok(match path {
                "helper.py" => "import shared\n",
                _ => "",
            }
            .to_owned())
        };
        let needed = needed("import helper\nfrom pkg.sub import f\n", &available, sources).unwrap();
        assert_eq!(needed, ["helper.py", "pkg/__init__.py", "pkg/sub.py", "shared.py"]);
    }
}
