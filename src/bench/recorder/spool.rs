//! Per-request records kept on disk while a run goes on, so asking for the
//! per-request report costs disk, not memory: a sweep like `gie-blog-10-replicas`
//! holds 2.24 million records of ~200 token times each, several GB as values.
//!
//! Each job writes its records, one compact JSON object per line, to a file of its
//! own in the system's temporary directory as it makes them; the report writer copies
//! the spools of one strategy, stage after stage, into its
//! `per_request_lifecycle_metrics.json`. A spool's file is removed when the spool is
//! dropped, written out or not, so a failed run leaves nothing behind.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Spools made by this process so far: part of each file's name.
static SPOOLS: AtomicU64 = AtomicU64::new(0);

/// Records being written; [`SpoolWriter::finish`] makes the [`RecordSpool`].
pub struct SpoolWriter {
    out: BufWriter<File>,
    /// Owns the file until it is finished, so an abandoned writer removes it too.
    spool: RecordSpool,
}

impl SpoolWriter {
    /// A new, empty spool file.
    pub fn create() -> io::Result<SpoolWriter> {
        let n = SPOOLS.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("igw-per-request-{}-{n}.jsonl", std::process::id()));
        let file = File::create(&path)?;
        Ok(SpoolWriter {
            out: BufWriter::new(file),
            spool: RecordSpool { path, records: 0 },
        })
    }

    /// Appends one record.
    pub fn push<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.spool.records += 1;
        Ok(())
    }

    /// Flushes the file and hands over the spool.
    pub fn finish(mut self) -> io::Result<RecordSpool> {
        self.out.flush()?;
        let records = self.spool.records;
        // The file moves to the returned spool; this writer's copy must not remove it.
        let path = std::mem::take(&mut self.spool.path);
        Ok(RecordSpool { path, records })
    }
}

/// One job's records on disk, one JSON object per line.
#[derive(Debug)]
pub struct RecordSpool {
    path: PathBuf,
    records: usize,
}

impl RecordSpool {
    /// Spools `records` in one go.
    pub fn from_records<T: Serialize>(records: &[T]) -> io::Result<RecordSpool> {
        let mut w = SpoolWriter::create()?;
        for r in records {
            w.push(r)?;
        }
        w.finish()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Writes the records into a JSON array being written to `out`: each preceded
    /// by `\n`, or by `,\n` unless it is the array's first (`first` says whether one
    /// was written yet, and is updated).
    pub fn copy_into(&self, out: &mut impl Write, first: &mut bool) -> io::Result<()> {
        let mut lines = BufReader::new(File::open(&self.path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            out.write_all(if *first { b"\n" } else { b",\n" })?;
            *first = false;
            out.write_all(line.strip_suffix(b"\n").unwrap_or(&line))?;
        }
    }

    /// Reads the records back (tests, tools).
    pub fn read<T: DeserializeOwned>(&self) -> io::Result<Vec<T>> {
        BufReader::new(File::open(&self.path)?)
            .lines()
            .map(|line| serde_json::from_str(&line?).map_err(io::Error::other))
            .collect()
    }
}

impl Drop for RecordSpool {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_copy_as_array_items() {
        let a = RecordSpool::from_records(&[1, 2]).unwrap();
        let b = RecordSpool::from_records(&[3]).unwrap();
        let empty = RecordSpool::from_records::<u8>(&[]).unwrap();
        assert_eq!((a.len(), b.len(), empty.is_empty()), (2, 1, true));
        assert_eq!(a.read::<u32>().unwrap(), [1, 2]);
        let mut out = b"[".to_vec();
        let mut first = true;
        for s in [&empty, &a, &b] {
            s.copy_into(&mut out, &mut first).unwrap();
        }
        out.extend_from_slice(b"\n]\n");
        assert_eq!(String::from_utf8(out).unwrap(), "[\n1,\n2,\n3\n]\n");
    }

    #[test]
    fn a_spool_removes_its_file_when_dropped_finished_or_not() {
        let spool = RecordSpool::from_records(&["x"]).unwrap();
        let path = spool.path.clone();
        assert!(path.is_file());
        drop(spool);
        assert!(!path.exists());

        let mut writer = SpoolWriter::create().unwrap();
        writer.push(&"y").unwrap();
        let path = writer.spool.path.clone();
        drop(writer);
        assert!(!path.exists(), "an abandoned writer leaves nothing");
    }
}
