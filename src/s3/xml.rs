//! The XML of S3's answers, read with quick-xml: listings, multipart uploads, errors. Pure.
//!
//! Each answer is flattened into its leaf elements, named by their path from the root
//! (`ListBucketResult/Contents/Key`), and split into records at a chosen element (one per
//! `Contents`): the few fields atoll reads are then plain lookups, and an element it does not
//! know (servers add their own) is ignored.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Leaf elements by path, in document order.
type Leaves = Vec<(String, String)>;

/// An answer's leaves outside any record, and each record's leaves (paths relative to it).
#[derive(Debug, Default)]
pub struct Doc {
    top: Leaves,
    records: Vec<Leaves>,
}

impl Doc {
    /// Parses `xml`, splitting records at the elements whose path is `record` (or none).
    pub fn parse(xml: &[u8], record: Option<&str>) -> Result<Doc, String> {
        let text = std::str::from_utf8(xml).map_err(|_| "the answer is not UTF-8".to_owned())?;
        let mut reader = Reader::from_str(text);
        let mut path: Vec<String> = Vec::new();
        let mut doc = Doc::default();
        let mut current: Option<(usize, Leaves)> = None;
        let mut content = String::new();
        loop {
            let event = reader
                .read_event()
                .map_err(|e| format!("malformed XML: {e}"))?;
            match event {
                Event::Start(e) => {
                    let name = e.local_name();
                    let name: &str = name.as_ref();
                    path.push(name.to_owned());
                    content.clear();
                    if current.is_none() && record == Some(path.join("/").as_str()) {
                        current = Some((path.len(), Vec::new()));
                    }
                }
                Event::Text(t) => content.push_str(&t.xml10_content()),
                Event::CData(t) => content.push_str(&t.into_inner()),
                Event::GeneralRef(r) => {
                    let entity = format!("&{};", r.xml10_content());
                    let resolved = quick_xml::escape::unescape(&entity)
                        .map_err(|e| format!("malformed XML: {e}"))?;
                    content.push_str(&resolved);
                }
                Event::End(_) => {
                    let depth = path.len();
                    match &mut current {
                        Some((at, leaves)) if depth > *at => {
                            leaves.push((path[*at..].join("/"), std::mem::take(&mut content)));
                        }
                        Some((at, _)) if depth == *at => {
                            let (_, leaves) = current.take().expect("a record is open");
                            doc.records.push(leaves);
                        }
                        _ => doc.top.push((path.join("/"), std::mem::take(&mut content))),
                    }
                    content.clear();
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !path.is_empty() {
            return Err("malformed XML: the answer ends inside an element".to_owned());
        }
        Ok(doc)
    }

    /// The text of the first leaf at `path` outside the records.
    pub fn get(&self, path: &str) -> Option<&str> {
        find(&self.top, path)
    }

    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.records.iter().map(|leaves| Record { leaves })
    }
}

/// One record of an answer (a listed object, an upload).
pub struct Record<'d> {
    leaves: &'d Leaves,
}

impl Record<'_> {
    pub fn get(&self, path: &str) -> Option<&str> {
        find(self.leaves, path)
    }
}

fn find<'l>(leaves: &'l Leaves, path: &str) -> Option<&'l str> {
    leaves
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, v)| v.as_str())
}

/// An error answer's code and message (`<Error><Code>..</Code><Message>..</Message>`), if the
/// body is one.
pub fn error(xml: &[u8]) -> Option<(String, String)> {
    let doc = Doc::parse(xml, None).ok()?;
    let code = doc.get("Error/Code")?.to_owned();
    Some((code, doc.get("Error/Message").unwrap_or("").to_owned()))
}

/// The body of a CompleteMultipartUpload request: the parts, in order, by number and ETag.
pub fn complete_body(parts: &[(u16, String)]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            quick_xml::escape::escape(etag.as_str())
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_splits_into_records_and_keeps_its_own_fields() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><IsTruncated>true</IsTruncated>
  <Contents><Key>p/blobs/a&amp;b</Key><Size>12</Size><ETag>&quot;e1&quot;</ETag>
    <LastModified>2026-12-07T10:00:00.000Z</LastModified></Contents>
  <Contents><Key><![CDATA[p/x]]></Key><Size>0</Size></Contents>
  <NextContinuationToken>tok</NextContinuationToken>
</ListBucketResult>"#;
        let doc = Doc::parse(xml, Some("ListBucketResult/Contents")).unwrap();
        assert_eq!(doc.get("ListBucketResult/IsTruncated"), Some("true"));
        assert_eq!(
            doc.get("ListBucketResult/NextContinuationToken"),
            Some("tok")
        );
        let rows: Vec<_> = doc
            .records()
            .map(|r| {
                (
                    r.get("Key").unwrap().to_owned(),
                    r.get("ETag").map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("p/blobs/a&b".to_owned(), Some("\"e1\"".to_owned())),
                ("p/x".to_owned(), None)
            ]
        );
    }

    #[test]
    fn errors_are_read_and_garbage_is_refused() {
        let xml = b"<Error><Code>NoSuchBucket</Code><Message>Bucket not found: x</Message></Error>";
        assert_eq!(
            error(xml),
            Some(("NoSuchBucket".into(), "Bucket not found: x".into()))
        );
        assert_eq!(error(b"<html>502 Bad Gateway</html>"), None);
        assert!(Doc::parse(b"<a><b>unclosed</a>", None).is_err());
        assert!(Doc::parse(b"<a><b>", None).is_err());
        assert!(Doc::parse(&[0xff, 0xfe], None).is_err());
    }

    #[test]
    fn a_completion_body_escapes_its_etags() {
        assert_eq!(
            complete_body(&[(1, "\"a\"".into()), (2, "b&".into())]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag>\
             </Part><Part><PartNumber>2</PartNumber><ETag>b&amp;</ETag></Part>\
             </CompleteMultipartUpload>"
        );
    }
}
