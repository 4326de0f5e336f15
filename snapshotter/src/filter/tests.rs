use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use proptest::prelude::*;

use super::*;
use crate::info::Kind;

fn info(name: &str, kind: Kind, parent: Option<&str>, labels: &[(&str, &str)]) -> Info {
    Info {
        namespace: "strata".into(),
        name: name.into(),
        parent: parent.map(Into::into),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        created: UNIX_EPOCH,
        updated: UNIX_EPOCH,
    }
}

fn matches(filters: &[&str], info: &Info) -> bool {
    Filters::parse(filters).unwrap().matches(info)
}

#[test]
fn table() {
    let gc = "containerd.io/gc.root";
    let a = info(
        "a",
        Kind::Active,
        Some("p"),
        &[(gc, "check-walk"), ("l", "2")],
    );
    let p = info("p", Kind::Committed, None, &[(gc, "check-walk")]);
    let v = info("v", Kind::View, Some("p"), &[("a.b", "x y")]);
    let cases: &[(&[&str], [bool; 3])] = &[
        (&[], [true, true, true]),
        (&[""], [true, true, true]),
        (&["kind==active"], [true, false, false]),
        (&["kind==committed"], [false, true, false]),
        (&["kind==view"], [false, false, true]),
        (&["name==p", "name==v"], [false, true, true]),
        (&["name==a,labels.l"], [true, false, false]),
        (&["name==p,labels.l"], [false, false, false]),
        (&["parent==p"], [true, false, true]),
        (&["parent!=\"\""], [true, false, true]),
        (
            &["parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"],
            [true, false, false],
        ),
        (
            &["labels.\"containerd.io/gc.root\"==check-walk"],
            [true, true, false],
        ),
        (&["labels.l"], [true, false, false]),
        (&["labels.l==2"], [true, false, false]),
        (&["labels.l!=2"], [false, true, true]),
        (&["labels.a.b==\"x y\""], [false, false, true]),
        (&["labels.\"a.b\""], [false, false, true]),
        (&[" kind == active , labels.l "], [true, false, false]),
        (&["unknown"], [false, false, false]),
        (&["labels"], [false, false, false]),
    ];
    for (filters, want) in cases {
        let got = [&a, &p, &v].map(|i| matches(filters, i));
        assert_eq!(&got, want, "filters {filters:?}");
    }
}

#[test]
fn rejects_malformed() {
    for (bad, offset) in [
        ("kind==", 6),
        ("==x", 0),
        ("kind~=a.*", 4),
        ("labels.\"open", 12),
        ("kind==a b", 8),
        ("name==a,", 8),
        ("labels.\"x\\q\"", 11),
    ] {
        let err = Filters::parse(&[bad]).unwrap_err();
        assert_eq!((err.filter.as_str(), err.offset), (bad, offset), "{err}");
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #[test]
    fn never_panics(src in ".{0,40}") {
        let _ = Filters::parse(&[src]);
    }

    #[test]
    fn quoted_label_round_trips(key in ".{1,20}", value in ".{0,20}", other in ".{0,20}") {
        let i = info("n", Kind::Active, None, &[(&key, &value)]);
        let eq = format!("labels.{}=={}", quote(&key), quote(&value));
        prop_assert!(matches(&[&eq], &i));
        let present = format!("labels.{}", quote(&key));
        prop_assert!(matches(&[&present], &i));
        let ne = format!("labels.{}!={}", quote(&key), quote(&other));
        prop_assert_eq!(matches(&[&ne], &i), other != value);
    }
}

/// The fuzz corpus of `fuzz/fuzz_targets/snapshot_filter.rs`, replayed: refusals are fine,
/// panics are bugs; containerd's own filters must parse.
#[test]
fn replay_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/snapshot_filter");
    let mut parsed = 0;
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&data);
        let filters: Vec<&str> = text.split('\n').collect();
        seen += 1;
        if let Ok(f) = Filters::parse(&filters) {
            parsed += 1;
            let _ = f.matches(&info("n", Kind::Active, Some("p"), &[("l", "2")]));
        }
    }
    assert!(seen >= 10, "seed corpus missing in {}", dir.display());
    assert!(
        parsed >= 7,
        "containerd's filters must parse ({parsed} of {seen})"
    );
}
