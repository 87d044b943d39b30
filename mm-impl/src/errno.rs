//! Kernel error numbers returned by model operations.

use serde::{Deserialize, Serialize};

/// The errors model operations return to their callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Errno {
    /// Out of memory (an injected allocation failure).
    ENOMEM,
    /// Bad address.
    EFAULT,
    /// Try again (a busy split).
    EAGAIN,
    /// Busy.
    EBUSY,
    /// Invalid argument (e.g. splitting a small folio).
    EINVAL,
    /// No data past the offset (`SEEK_DATA` at or after the last data).
    ENXIO,
    /// Already there (a folio cached at that index).
    EEXIST,
    /// No such entry (`UFFDIO_COPY` outside a registered VMA).
    ENOENT,
}
