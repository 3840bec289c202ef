//! A blob file as a response body: a blocking thread reads it in 1 MiB chunks (the disk may
//! be slow; executor threads must not wait on it) and hands whole chunks to the connection's
//! task through a channel of two, so the hand-over costs one wake-up per MiB instead of one
//! per pipe-full, and at most three chunks of one download are in memory.

use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use smol::channel::{bounded, Receiver};
use smol::io::{AsyncBufRead, AsyncRead};
use smol::stream::Stream;

const CHUNK: usize = 1 << 20;

pub struct FileBody {
    chunks: Pin<Box<Receiver<io::Result<Vec<u8>>>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl FileBody {
    /// Streams `len` bytes of `file` from its current position.
    pub fn new(mut file: File, len: u64) -> FileBody {
        let (tx, rx) = bounded(2);
        // The reader stops when the body is dropped (the channel closes) or the file ends.
        smol::unblock(move || {
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
                let mut buf = vec![0u8; want];
                let chunk = match file.read_exact(&mut buf) {
                    Ok(()) => Ok(buf),
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                if tx.send_blocking(chunk).is_err() || failed {
                    return;
                }
                left -= want as u64;
            }
        })
        .detach();
        FileBody {
            chunks: Box::pin(rx),
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl AsyncBufRead for FileBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.pos == this.current.len() && !this.done {
            match this.chunks.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.current = chunk;
                    this.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(&this.current[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.current.len());
    }
}

impl AsyncRead for FileBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(a)) => a,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::AsyncReadExt;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn streams_exactly_the_range_asked_for() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        let len = (2 * CHUNK + 7) as u64;
        let mut out = Vec::new();
        smol::block_on(FileBody::new(f, len).read_to_end(&mut out)).unwrap();
        assert_eq!(out, &data[5..5 + len as usize]);
    }

    #[test]
    fn a_short_file_is_an_error_not_a_short_body() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 100]).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut out = Vec::new();
        let r = smol::block_on(FileBody::new(f, 200).read_to_end(&mut out));
        assert!(r.is_err());
    }
}
