//! The hibernation image check can fail: a missing page, an extra page or a wrong value is an
//! image-mismatch; the image of exactly the saveable pages at snapshot time passes.

use mm_impl::violation::Kind;
use mm_impl::world::{World, WorldConfig};
use oracles::consequence::ImageCheck;

fn world() -> World {
    let w = World::empty(WorldConfig::default());
    {
        let mut free = w.zone.data_unlocked();
        free[3] = false;
        free[5] = false;
    }
    w.pages[3].data.set_plain(0x33);
    w.pages[5].data.set_plain(0x55);
    w
}

fn verdict(image: Vec<(u32, u64)>) -> Option<Kind> {
    let w = world();
    let mut c = ImageCheck::default();
    assert!(c.observe(&w, None).is_none());
    c.observe(&w, Some(&image)).map(|v| v.kind)
}

#[test]
fn exact_image_passes() {
    assert_eq!(verdict(vec![(3, 0x33), (5, 0x55)]), None);
}

#[test]
fn wrong_missing_or_extra_pages_fail() {
    assert_eq!(
        verdict(vec![(3, 0x33), (5, 0x56)]),
        Some(Kind::ImageMismatch)
    );
    assert_eq!(verdict(vec![(3, 0x33)]), Some(Kind::ImageMismatch));
    assert_eq!(
        verdict(vec![(3, 0x33), (4, 0), (5, 0x55)]),
        Some(Kind::ImageMismatch)
    );
}

#[test]
fn memory_is_taken_at_snapshot_time() {
    // A page that changes after the snapshot started does not change what the image must hold.
    let w = world();
    let mut c = ImageCheck::default();
    assert!(c.observe(&w, None).is_none());
    w.pages[5].data.set_plain(0x99);
    assert!(c.observe(&w, Some(&vec![(3, 0x33), (5, 0x55)])).is_none());
}
