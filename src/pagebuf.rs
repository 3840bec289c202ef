//! Page-aligned byte buffers, for the large copies between files and sockets.
//!
//! Where a buffer starts within its page decides how fast the kernel copies into it. A large
//! `Vec<u8>` starts wherever the allocator puts it: 16 bytes into a page when it comes from
//! `mmap`. Served through a buffer 16 bytes into a page, a blob's copies from the page cache
//! took over twice as long as through a page-aligned one (bench/results/findings.md): with the
//! source page-aligned, the copy's loads and stores fall a few bytes apart modulo 4 KiB, and
//! the processor takes them for a conflict (4K aliasing). [`PageBuf`] asks for
//! one page more than it needs and hands out the aligned window, in safe code.

use std::ops::{Deref, DerefMut};

/// Alignment of every [`PageBuf`]: the 4 KiB that aliasing is counted in (a larger page size
/// elsewhere costs nothing here).
const PAGE: usize = 4096;

/// A zeroed, fixed-size byte buffer whose first byte starts a 4 KiB page.
pub struct PageBuf {
    bytes: Box<[u8]>,
    start: usize,
    len: usize,
}

impl PageBuf {
    pub fn new(len: usize) -> PageBuf {
        let bytes = vec![0u8; len + PAGE].into_boxed_slice();
        let start = (PAGE - bytes.as_ptr().addr() % PAGE) % PAGE;
        PageBuf { bytes, start, len }
    }
}

impl Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_starts_a_page_and_holds_exactly_its_length() {
        for len in [1, 4095, 4096, 256 * 1024, 1 << 20] {
            let mut b = PageBuf::new(len);
            assert_eq!(b.as_ptr().addr() % PAGE, 0, "len {len}");
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            b[len - 1] = 7;
            assert_eq!(b[len - 1], 7);
        }
    }
}
