//! The seed programs of `corpora/seeds`, embedded so `mmfuzz fuzz` works from any directory.

use crate::format::parse_text;
use crate::program::ProgFile;

/// (file name, text) of every seed program.
pub const SEEDS: &[(&str, &str)] = &[
    (
        "gup-split-race.mmprog",
        include_str!("../../corpora/seeds/gup-split-race.mmprog"),
    ),
    (
        "gup-pin-bias-early.mmprog",
        include_str!("../../corpora/seeds/gup-pin-bias-early.mmprog"),
    ),
    (
        "buildid-readahead.mmprog",
        include_str!("../../corpora/seeds/buildid-readahead.mmprog"),
    ),
    (
        "collapse-publish-early.mmprog",
        include_str!("../../corpora/seeds/collapse-publish-early.mmprog"),
    ),
    (
        "buildid-collapse.mmprog",
        include_str!("../../corpora/seeds/buildid-collapse.mmprog"),
    ),
    (
        "buildid-nmi-spin.mmprog",
        include_str!("../../corpora/seeds/buildid-nmi-spin.mmprog"),
    ),
    (
        "hibernate-trust-present.mmprog",
        include_str!("../../corpora/seeds/hibernate-trust-present.mmprog"),
    ),
    (
        "hibernate-map-unchecked.mmprog",
        include_str!("../../corpora/seeds/hibernate-map-unchecked.mmprog"),
    ),
    (
        "pin-writeback-race.mmprog",
        include_str!("../../corpora/seeds/pin-writeback-race.mmprog"),
    ),
    (
        "longterm-pin-file-write.mmprog",
        include_str!("../../corpora/seeds/longterm-pin-file-write.mmprog"),
    ),
    (
        "vmap-dirty-after-notifier.mmprog",
        include_str!("../../corpora/seeds/vmap-dirty-after-notifier.mmprog"),
    ),
    (
        "retract-uffd-copy.mmprog",
        include_str!("../../corpora/seeds/retract-uffd-copy.mmprog"),
    ),
    (
        "retract-iommu-walk.mmprog",
        include_str!("../../corpora/seeds/retract-iommu-walk.mmprog"),
    ),
];

/// The embedded seeds, parsed. They are tested to parse, so a failure here is a build defect.
pub fn embedded() -> Vec<(&'static str, ProgFile)> {
    SEEDS
        .iter()
        .map(|(name, text)| {
            (
                *name,
                parse_text(text).unwrap_or_else(|e| panic!("embedded seed {name}: {e}")),
            )
        })
        .collect()
}

/// One embedded seed by file name.
pub fn seed(name: &str) -> Option<ProgFile> {
    embedded()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
}
