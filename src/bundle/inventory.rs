//! Inventories: the digests a registry holds, written by `atoll --inventory` on the isolated
//! side and read by `atoll --export --exclude-from` on the connected side, so a bundle carries
//! only what the target lacks. One digest a line; `#` starts a comment.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::job::Output;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::registry::Registry;

/// The inventory's text: a comment line, then every digest in order.
pub fn render(blobs: &[(String, u64)]) -> String {
    let bytes: u64 = blobs.iter().map(|b| b.1).sum();
    let mut s = format!(
        "# atoll inventory: {} blobs, {bytes} bytes; give it to atoll --export --exclude-from\n",
        blobs.len()
    );
    for (d, _) in blobs {
        s.push_str(d);
        s.push('\n');
    }
    s
}

/// Parses an inventory. Pure.
pub fn parse(text: &str) -> std::result::Result<HashSet<Digest>, String> {
    let mut out = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        let d = word
            .parse::<Digest>()
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        out.insert(d);
    }
    Ok(out)
}

pub fn write(registry: &Registry, output: &Output) -> Result<usize> {
    let blobs = registry.inventory()?;
    let text = render(&blobs);
    match output {
        Output::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .ctx(|| "writing to standard output".into())?;
        }
        Output::File(p) => std::fs::write(p, text).at("writing", p)?,
    }
    Ok(blobs.len())
}

pub fn read(path: &Path) -> Result<HashSet<Digest>> {
    let text = std::fs::read_to_string(path).at("reading", path)?;
    parse(&text).map_err(|e| Error::Config(format!("--exclude-from {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_reads_back() {
        let a = Digest::sha256_of(b"a").to_string();
        let b = Digest::sha256_of(b"b").to_string();
        let text = render(&[(a.clone(), 1), (b.clone(), 2)]);
        assert!(text.starts_with("# atoll inventory: 2 blobs, 3 bytes"));
        let set = parse(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a.parse().unwrap()));
        let e = parse(&format!("{a}\n\nnot-a-digest\n")).unwrap_err();
        assert!(e.starts_with("line 3:"), "{e}");
        assert_eq!(
            parse(&format!("  {b}   # from the site\n")).unwrap().len(),
            1
        );
    }
}
