//! greenflow's runs as data. A run's series come out of VictoriaMetrics through the JSON-lines export API (the
//! format every version reads and writes alike) in hour-long, checkpointed parts, into:
//! - an export for analysis tools ([`formats`]: JSON lines, CSV, Parquet in long form);
//! - an archive ([`archive`]): canonical, byte-identical for the same run from any VictoriaMetrics version, with a
//!   manifest of checksums, its NAR hash and Nix store path ([`nar`]);
//!
//! and an archive goes back into any VictoriaMetrics with [`import()`], checked before and after.

pub mod archive;
pub mod error;
pub mod formats;
pub mod import;
pub mod nar;
pub mod series;
pub mod source;
pub mod staging;

pub use archive::{Archive, Created, Manifest, archive_name, run_selector, verify};
pub use error::ArchiveError;
pub use formats::Format;
pub use import::{Imported, import};
pub use nar::NarHash;
pub use source::VmEndpoint;
pub use staging::{FetchProgress, PartFile, Staging, Window};
