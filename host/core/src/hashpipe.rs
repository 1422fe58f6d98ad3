//! SHA-256 on a second thread. The producer (a tree walker, a file
//! assembler) reads straight into 1 MiB chunks and hands them over; a
//! hashing thread digests them meanwhile. Reading (syscalls, page-cache
//! copies) and hashing overlap, and chunks are recycled, not reallocated.

use std::io::{self, Read};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::hash::Sha256Hash;

const CHUNK: usize = 1 << 20;
/// Full chunks waiting for the hasher.
const IN_FLIGHT: usize = 8;

/// Where the producer puts the bytes to hash.
pub struct HashFeed {
    chunk: Vec<u8>,
    filled: usize,
    full: mpsc::SyncSender<(Vec<u8>, usize)>,
    empty: mpsc::Receiver<Vec<u8>>,
}

/// Hash everything `produce` puts into the feed. An error from `produce`
/// (or a failure to hand over a chunk) is returned instead of the hash.
pub fn sha256<E: From<io::Error>>(
    produce: impl FnOnce(&mut HashFeed) -> Result<(), E>,
) -> Result<Sha256Hash, E> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..IN_FLIGHT + 1 {
        let _ = empty_tx.send(vec![0; CHUNK]);
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for (chunk, filled) in full_rx {
                h.update(&chunk[..filled]);
                // The producer may have finished; then the chunk is not needed.
                let _ = empty_tx.send(chunk);
            }
            h
        });
        let mut feed = HashFeed {
            chunk: vec![0; CHUNK],
            filled: 0,
            full: full_tx,
            empty: empty_rx,
        };
        let produced = produce(&mut feed).and_then(|()| Ok(feed.finish()?));
        drop(feed);
        let h = hasher
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        produced.map(|()| Sha256Hash(h.finalize().into()))
    })
}

impl HashFeed {
    /// Hash these bytes next.
    pub fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(CHUNK - self.filled);
            self.chunk[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Hash what `reader` yields, up to its end or `limit` bytes, reading
    /// straight into the chunks; returns how many bytes were hashed.
    pub fn put_reader(&mut self, reader: &mut impl Read, limit: u64) -> io::Result<u64> {
        let mut copied = 0u64;
        while copied < limit {
            if self.filled == CHUNK {
                self.send()?;
            }
            let room = (CHUNK - self.filled).min(usize::try_from(limit - copied).unwrap_or(CHUNK));
            let n = match reader.read(&mut self.chunk[self.filled..self.filled + room]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            copied += n as u64;
            self.filled += n;
        }
        Ok(copied)
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self.empty.recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let full = std::mem::replace(&mut self.chunk, next);
        let filled = std::mem::take(&mut self.filled);
        self.full
            .send((full, filled))
            .map_err(|_| io::Error::other("the hashing thread stopped"))
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.send()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_hashes_bytes_and_readers_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 253) as u8).collect();
        let got = sha256(|feed| -> io::Result<()> {
            feed.put(b"head")?;
            assert_eq!(
                feed.put_reader(&mut &data[..], u64::MAX)?,
                data.len() as u64
            );
            // A limit stops the read early.
            assert_eq!(feed.put_reader(&mut &data[..], 5)?, 5);
            feed.put(&data[..CHUNK + 1])
        })
        .unwrap();
        let mut all = b"head".to_vec();
        all.extend_from_slice(&data);
        all.extend_from_slice(&data[..5]);
        all.extend_from_slice(&data[..CHUNK + 1]);
        assert_eq!(got, Sha256Hash::of_bytes(&all));
    }

    #[test]
    fn a_producer_error_is_returned() {
        let r = sha256(|feed| {
            feed.put(b"x")?;
            Err(io::Error::other("boom"))
        });
        assert_eq!(r.unwrap_err().to_string(), "boom");
    }
}
