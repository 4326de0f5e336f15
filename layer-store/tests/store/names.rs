//! Images are named as docker names them: references normalized, ids by a short prefix, and
//! tags that move between images.

use strata_layer_store::{Store, StoreError};

use crate::fixtures::{Comp, Image, Item, sample_layers};
use crate::import;

#[test]
fn names_resolve_in_short_and_full_form_and_by_id_prefix() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path().join("store"))?;
    let image = Image::new(&sample_layers(), Comp::Gzip);
    image.write_oci(&tmp.path().join("a"), "a");
    let report = import(&store, &tmp.path().join("a"), "myimg:da")?;
    assert_eq!(report.tags, ["docker.io/library/myimg:da"]);
    for name in [
        "myimg:da",
        "docker.io/library/myimg:da",
        "docker.io/myimg:da",
        &report.image[..4],
        &format!("sha256:{}", &report.image[..10]),
        &report.image,
    ] {
        assert_eq!(store.image(name)?.id(), report.image, "{name}");
    }
    for missing in ["myimg", "myimg:latest", &report.image[..3]] {
        let err = store.image(missing).expect_err(missing);
        assert!(matches!(err, StoreError::ImageNotFound { .. }), "{err}");
    }
    let bad = import(&store, &tmp.path().join("a"), "Upper:1").expect_err("uppercase");
    assert!(bad.to_string().contains("not an image reference"), "{bad}");
    Ok(())
}

#[test]
fn tag_adds_a_name_that_moves_from_its_previous_image() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path().join("store"))?;
    let a = Image::new(&sample_layers(), Comp::Gzip);
    let b = Image::new(
        &[vec![Item::File("b".into(), b"b".to_vec(), 0o644)]],
        Comp::Gzip,
    );
    a.write_oci(&tmp.path().join("a"), "a");
    b.write_oci(&tmp.path().join("b"), "b");
    let a = import(&store, &tmp.path().join("a"), "a")?;
    let b = import(&store, &tmp.path().join("b"), "b")?;

    assert_eq!(
        store.tag("a", "localhost:5000/x")?,
        "localhost:5000/x:latest"
    );
    assert_eq!(store.image("localhost:5000/x:latest")?.id(), a.image);
    store.tag(&b.image[..6], "localhost:5000/x")?;
    assert_eq!(store.image("localhost:5000/x")?.id(), b.image);
    assert_eq!(store.image("a")?.tags, ["docker.io/library/a:latest"]);
    assert_eq!(
        store.image("b")?.tags,
        ["docker.io/library/b:latest", "localhost:5000/x:latest"]
    );

    let err = store.tag("nothing", "c").expect_err("no source");
    assert!(matches!(err, StoreError::ImageNotFound { .. }), "{err}");
    let err = store.tag("a", "C").expect_err("bad target");
    assert!(matches!(err, StoreError::Name(_)), "{err}");

    // rmi by the short name removes the normalized tag; the image stays with its other tag.
    store.remove_image("localhost:5000/x")?;
    assert_eq!(store.image("b")?.tags, ["docker.io/library/b:latest"]);
    Ok(())
}

#[test]
fn untag_leaves_the_image_listed_by_its_id() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path().join("store"))?;
    let image = Image::new(&sample_layers(), Comp::Gzip);
    image.write_oci(&tmp.path().join("a"), "a");
    let a = import(&store, &tmp.path().join("a"), "a")?;
    store.untag("a")?;
    assert!(matches!(
        store.image("a"),
        Err(StoreError::ImageNotFound { .. })
    ));
    assert!(store.image(&a.image)?.tags.is_empty());
    assert_eq!(store.images()?.len(), 1);
    let err = store.untag("a").expect_err("no longer a tag");
    assert!(matches!(err, StoreError::ImageNotFound { .. }), "{err}");
    store.remove_image(&a.image)?;
    assert!(store.images()?.is_empty());
    Ok(())
}
