//! The wordcount example, built from step packages: each step packed from
//! its descriptor, the pipeline run from the archives, and the same packages
//! published to a registry and used by reference.

use std::path::Path;

use weir_tests::{LocalRegistry, Project, output_digest, printed, steps_with, wordcount_steps};

const STEPS: [&str; 4] = ["normalize", "count", "stats", "report"];

/// A copy of `examples/wordcount` with its steps built and packed as
/// `packages/NAME.tar`, as `make run-wordcount` does.
fn wordcount() -> Project {
    let project = Project::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wordcount");
    project.write("pipeline.toml", std::fs::read_to_string(example.join("pipeline.toml")).unwrap());
    project.write("data/weir.txt", std::fs::read_to_string(example.join("data/weir.txt")).unwrap());
    for step in STEPS {
        let descriptor = format!("packages/{step}/step.toml");
        project.write(&descriptor, std::fs::read_to_string(example.join(&descriptor)).unwrap());
        std::fs::create_dir_all(project.path().join("build")).unwrap();
        std::fs::copy(
            wordcount_steps().join(format!("{step}.wasm")),
            project.path().join(format!("build/{step}.wasm")),
        )
        .unwrap();
        let output = project.weir(&["step", "pack", &descriptor, "-o", &format!("packages/{step}.tar")]);
        assert!(output.status.success(), "{}", printed(&output));
    }
    project
}

/// The report's table rows: (word, count).
fn ranked(report: &str) -> Vec<(String, u64)> {
    report
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            match cells.as_slice() {
                [rank, word, count] if rank.parse::<u64>().is_ok() => Some((word.to_string(), count.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn the_packaged_example_reports_the_most_frequent_words_and_reruns_only_what_changed() {
    let project = wordcount();
    let (code, first) = project.run_json(&[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(steps_with(&first, "ran"), ["count", "normalize", "report", "stats"]);
    let report = project.cat(output_digest(&first, "report", "report"));
    assert!(report.starts_with("# Words on the weir\n"), "{report}");
    let rows = ranked(&report);
    assert_eq!(rows.len(), 10, "the package's default top is overridden by the pipeline's: {report}");
    assert!(rows.windows(2).all(|pair| pair[0].1 >= pair[1].1), "most frequent first: {report}");
    assert!(rows.iter().all(|(word, _)| word != "the" && word != "of"), "stop words are skipped: {report}");
    let text = std::fs::read_to_string(project.path().join("data/weir.txt")).unwrap().to_lowercase();
    let occurrences = text.split(|c: char| !c.is_alphanumeric()).filter(|word| *word == rows[0].0).count() as u64;
    assert_eq!(rows[0].1, occurrences, "the top word's count: {report}");

    let (code, fewer) = project.run_json(&["--param", "top=3"]);
    assert_eq!(code, 0, "{fewer}");
    assert_eq!(steps_with(&fewer, "ran"), ["report"]);
    assert_eq!(ranked(&project.cat(output_digest(&fewer, "report", "report"))), rows[..3]);

    // A pipeline parameter of another type than the package declares is
    // refused once the run resolves it, before anything runs.
    let manifest = std::fs::read_to_string(project.path().join("pipeline.toml")).unwrap();
    project.manifest(&manifest.replace("title = \"Words on the weir\"", "title = 5"));
    let output = project.weir(&["run", "pipeline.toml"]);
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("step `report`, field `params.title`: 5 is not a string"), "{text}");
}

#[test]
fn the_examples_packages_published_to_a_registry_are_used_by_reference_from_the_same_cache() {
    let Some(registry) = LocalRegistry::start() else { return };
    let project = wordcount();
    let (code, local) = project.run_json(&[]);
    assert_eq!(code, 0, "{local}");

    let mut manifest = std::fs::read_to_string(project.path().join("pipeline.toml")).unwrap();
    for step in STEPS {
        let reference = format!("{}/wordcount/{step}:1.0.0", registry.address);
        let output = project.weir(&["step", "push", &format!("packages/{step}.tar"), &reference]);
        assert!(output.status.success(), "{}", printed(&output));
        manifest = manifest.replace(&format!("\"packages/{step}.tar\""), &format!("\"{reference}\""));
    }
    std::fs::remove_dir_all(project.path().join("packages")).unwrap();
    project.manifest(&manifest);
    let (code, by_reference) = project.run_json(&[]);
    assert_eq!(code, 0, "{by_reference}");
    assert_eq!(steps_with(&by_reference, "cached"), ["count", "normalize", "report", "stats"]);
    assert_eq!(output_digest(&by_reference, "report", "report"), output_digest(&local, "report", "report"));
    let lock = std::fs::read_to_string(project.path().join("weir.lock")).unwrap();
    assert_eq!(lock.matches("/wordcount/").count(), 4, "{lock}");
}
