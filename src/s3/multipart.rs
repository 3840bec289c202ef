//! Multipart uploads of the S3 client: started, filled part by part, completed or aborted,
//! listed when a crash left them; and the part-by-part server-side copy of an object larger
//! than one copy may take.

use http_types::{Method, StatusCode};
use rusty_s3::S3Action;

use super::{
    discard, encode_key, header, iso_date, read_body, xml, Bytes, PendingUpload, S3, SIGNED_FOR,
    SMALL_BODY,
};
use crate::error::Result;

impl S3 {
    /// Starts a multipart upload of `key`; returns its id.
    pub async fn create_upload(&self, key: &str) -> Result<String> {
        let full = self.full(key);
        let url = self.sign(rusty_s3::Method::Post, Some(&full), &[("uploads", "")]);
        let mut res = self.send(Method::Post, url, None, &[]).await?;
        let status = res.status();
        let body = read_body(&mut res, SMALL_BODY).await.unwrap_or_default();
        if !status.is_success() {
            return Err(self.refused(&format!("starting an upload of {key}"), status, &body));
        }
        xml::Doc::parse(&body, None)
            .ok()
            .and_then(|d| {
                d.get("InitiateMultipartUploadResult/UploadId")
                    .map(str::to_owned)
            })
            .ok_or_else(|| self.unavailable(&format!("starting an upload of {key}: no UploadId")))
    }

    /// Sends part `number` (from 1) of an upload; returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        bytes: Bytes,
    ) -> Result<String> {
        let full = self.full(key);
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), &full, number, upload_id)
            .sign(SIGNED_FOR);
        let mut res = self.send(Method::Put, url, Some(bytes), &[]).await?;
        if !res.status().is_success() {
            return Err(self
                .failed(&format!("sending part {number} of {key}"), &mut res)
                .await);
        }
        let etag = header(&res, "ETag").map(str::to_owned);
        discard(res).await;
        etag.ok_or_else(|| self.unavailable(&format!("part {number} of {key}: no ETag")))
    }

    /// Finishes an upload from its parts, in order: the object appears whole.
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u16, String)],
    ) -> Result<()> {
        let full = self.full(key);
        let url = self.sign(
            rusty_s3::Method::Post,
            Some(&full),
            &[("uploadId", upload_id)],
        );
        let body: Bytes = xml::complete_body(parts).into_bytes().into();
        let mut res = self.send(Method::Post, url, Some(body), &[]).await?;
        // Like a copy, a completion may fail after its 200.
        let status = res.status();
        let answer = read_body(&mut res, SMALL_BODY).await.unwrap_or_default();
        if status.is_success() && xml::error(&answer).is_none() {
            return Ok(());
        }
        Err(self.refused(&format!("finishing the upload of {key}"), status, &answer))
    }

    /// Drops an unfinished upload and its parts.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let full = self.full(key);
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), &full, upload_id)
            .sign(SIGNED_FOR);
        let mut res = self.send(Method::Delete, url, None, &[]).await?;
        if res.status().is_success() || res.status() == StatusCode::NotFound {
            discard(res).await;
            return Ok(());
        }
        Err(self
            .failed(&format!("aborting the upload of {key}"), &mut res)
            .await)
    }

    /// The unfinished multipart uploads of keys under `under`.
    pub async fn pending_uploads(&self, under: &str) -> Result<Vec<PendingUpload>> {
        let full = self.full(under);
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("uploads", ""), ("prefix", &full)];
            if let Some((k, u)) = &markers {
                query.push(("key-marker", k));
                query.push(("upload-id-marker", u));
            }
            let url = self.sign(rusty_s3::Method::Get, None, &query);
            let body = self.get_xml(url, "listing unfinished uploads").await?;
            let doc = xml::Doc::parse(&body, Some("ListMultipartUploadsResult/Upload"))
                .map_err(|e| self.unavailable(&format!("listing unfinished uploads: {e}")))?;
            for r in doc.records() {
                let (Some(key), Some(id)) = (r.get("Key"), r.get("UploadId")) else {
                    continue;
                };
                let Some(key) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                found.push(PendingUpload {
                    key: key.to_owned(),
                    upload_id: id.to_owned(),
                    initiated: r.get("Initiated").and_then(iso_date).unwrap_or(0),
                });
            }
            let next = (
                doc.get("ListMultipartUploadsResult/NextKeyMarker"),
                doc.get("ListMultipartUploadsResult/NextUploadIdMarker"),
            );
            markers = match (doc.get("ListMultipartUploadsResult/IsTruncated"), next) {
                (Some("true"), (Some(k), Some(u))) => Some((k.to_owned(), u.to_owned())),
                _ => return Ok(found),
            };
        }
    }

    /// Copies an object larger than one copy may take, part by part on the server.
    pub async fn copy_in_parts(&self, from: &str, to: &str, size: u64) -> Result<()> {
        const STEP: u64 = 1 << 30;
        let upload = self.create_upload(to).await?;
        let copied = async {
            let full = self.full(to);
            let source = format!("/{}/{}", self.bucket.name(), encode_key(&self.full(from)));
            let mut parts = Vec::new();
            for (i, start) in (0..size).step_by(STEP as usize).enumerate() {
                let number = i as u16 + 1;
                let range = format!("bytes={start}-{}", (start + STEP).min(size) - 1);
                let mut action =
                    self.bucket
                        .upload_part(Some(&self.credentials), &full, number, &upload);
                action
                    .headers_mut()
                    .insert("x-amz-copy-source", source.clone());
                action
                    .headers_mut()
                    .insert("x-amz-copy-source-range", range.clone());
                let url = action.sign(SIGNED_FOR);
                let headers = [
                    ("x-amz-copy-source", source.as_str()),
                    ("x-amz-copy-source-range", range.as_str()),
                ];
                let mut res = self.send(Method::Put, url, None, &headers).await?;
                let status = res.status();
                let body = read_body(&mut res, SMALL_BODY).await.unwrap_or_default();
                let etag = xml::Doc::parse(&body, None)
                    .ok()
                    .and_then(|d| d.get("CopyPartResult/ETag").map(str::to_owned));
                match etag {
                    Some(etag) if status.is_success() => parts.push((number, etag)),
                    _ => {
                        return Err(self.refused(&format!("copying {from} to {to}"), status, &body))
                    }
                }
            }
            self.complete_upload(to, &upload, &parts).await
        }
        .await;
        if copied.is_err() {
            let _ = self.abort_upload(to, &upload).await;
        }
        copied
    }
}
