//! After-switch hooks run once the release they are declared for goes live, with the real
//! pm2, git and the example app: what ran for a release before it last went live does not
//! count as run since.

mod common;

use common::{World, steps};

/// The lines the hook appended to `file` (one per run).
fn runs(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_hook_declared_again_after_a_switch_back_without_hooks_runs() {
    let w = World::new("hooked");
    let v1 = w.app_head();
    let ran = w.root().join("hook-ran");
    let mut with = w.app(&v1);
    with.spec.hooks.after_switch = vec![format!("echo ran >> '{}'", ran.display())];
    w.commit_app(&with);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(runs(&ran), 1, "the first rollout runs the hook");
    let live = w.current().expect("a release is live");

    // `current` moved by hand to another directory; the document drops its hook.
    std::fs::create_dir_all(w.releases_root().join("releases/elsewhere")).unwrap();
    shipshape::release::Layout::new(w.releases_root())
        .switch("elsewhere")
        .unwrap();
    let mut without = with.clone();
    without.spec.hooks.after_switch.clear();
    w.commit_app(&without);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.current().as_deref(), Some(live.as_str()), "switched back");
    assert!(steps(&w.record()).contains(&"switch"), "{log}");
    assert_eq!(runs(&ran), 1, "no hook is declared");

    // The hook is declared again: it has not run since the release last went live.
    w.commit_app(&with);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        steps(&w.record()),
        ["hook", "verify"],
        "the hook runs, and nothing else\n{log}"
    );
    assert_eq!(runs(&ran), 2);

    // And once run, not again.
    w.commit_app(&with);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(runs(&ran), 2, "{log}");
}
