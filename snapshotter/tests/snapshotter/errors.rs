//! What a failed operation says: each cause once, the snapshot and path at fault first.

use strata_snapshotter::{Error, Labels};

use crate::conformance::suite;

#[test]
fn a_failed_mounts_chain_says_each_cause_once() {
    let Some(s) = suite() else { return };
    s.sn.prepare("a", None, Labels::new()).unwrap();
    let target = s.dir.path().join("no-such-target");
    let err = s.sn.mount("a", &target).unwrap_err();
    assert!(matches!(err, Error::Mount { .. }), "{err:?}");
    let chain = strata_testkit::assert_chain_once(&err);
    assert!(
        chain.starts_with(&format!("mount snapshot \"a\" at {}: ", target.display())),
        "{chain}"
    );
    let os = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
    assert_eq!(chain.matches(&os.to_string()).count(), 1, "{chain}");
}
