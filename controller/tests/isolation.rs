//! A new build never changes the live release: `reuse-deps` gives the new release its own
//! copy of `node_modules` (reflinked where the filesystem can, copied otherwise), so a build
//! step that rewrites a dependency file in place (as `prisma generate` does with
//! `node_modules/.prisma/client`) writes into the new release only, even when it then fails.
//! Real git, real npm (offline: the dependency is a tarball committed to the app repo),
//! real pm2, the example app.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{DEP_FILE, DEP_INDEX_JS as V1_BYTES, World};

/// Every regular file's inode under `dir`.
fn inodes(dir: &Path) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(inodes(&entry.path()));
        } else if kind.is_file() {
            out.insert(entry.metadata().unwrap().ino());
        }
    }
    out
}

#[test]
fn a_build_that_rewrites_a_dependency_file_and_fails_leaves_the_live_release_untouched() {
    let w = World::new("isolated");
    w.add_local_dependency();
    let offline = |commit: &str| {
        let mut app = w.app(commit);
        app.spec.build.install = Some("npm ci --offline --no-audit --no-fund".into());
        app
    };
    let v1 = w.app_head();
    w.commit_app(&offline(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "v1 deploy failed:\n{log}");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let v1_dir = w.releases_root().join("releases").join(&v1);
    assert_eq!(
        std::fs::read_to_string(v1_dir.join(DEP_FILE)).unwrap(),
        V1_BYTES
    );

    // v2: the same lockfile (so the plan reuses v1's node_modules); its build rewrites the
    // dependency file in place (same inode: `>` truncates and writes) and then fails.
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = offline(&v2);
    doc.spec.build.steps = vec![
        "printf 'rewritten by the v2 build' > node_modules/dep/index.js; echo generate failed >&2; exit 3"
            .into(),
    ];
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "the v2 build must fail:\n{log}");
    let rec = w.record();
    assert_eq!(
        common::steps(&rec),
        ["fetch", "reuse-deps", "build"],
        "the plan must reuse v1's node_modules"
    );

    // The live release's bytes are v1's; it still serves; status says it was not touched.
    assert_eq!(
        std::fs::read_to_string(v1_dir.join(DEP_FILE)).unwrap(),
        V1_BYTES,
        "the v2 build wrote into the live release"
    );
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let failed = common::revision_of(&rec, &v2);
    assert!(
        failed
            .revision
            .message
            .contains("the live release was not touched"),
        "{}",
        failed.revision.message
    );

    // The build did write, into v2's own files; none of v2's files is one of v1's.
    let v2_dir = w.releases_root().join("releases").join(&v2);
    assert_eq!(
        std::fs::read_to_string(v2_dir.join(DEP_FILE)).unwrap(),
        "rewritten by the v2 build"
    );
    let shared: Vec<u64> = inodes(&v2_dir.join("node_modules"))
        .intersection(&inodes(&v1_dir.join("node_modules")))
        .copied()
        .collect();
    assert!(shared.is_empty(), "v2 shares inodes {shared:?} with v1");
    // The copy keeps the bin link a link, and the executable bit.
    assert_eq!(
        std::fs::read_link(v2_dir.join("node_modules/.bin/dep")).unwrap(),
        Path::new("../dep/bin.js")
    );
    assert_eq!(
        std::fs::metadata(v2_dir.join("node_modules/dep/bin.js"))
            .unwrap()
            .mode()
            & 0o777,
        std::fs::metadata(v1_dir.join("node_modules/dep/bin.js"))
            .unwrap()
            .mode()
            & 0o777,
    );
}
