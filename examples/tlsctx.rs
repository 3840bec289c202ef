fn main() {
    let _ = native_tls::TlsConnector::new().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let _c = native_tls::TlsConnector::new().unwrap();
    }
    println!(
        "native {:?} FILE={:?} DIR={:?}",
        t.elapsed() / 20,
        std::env::var("SSL_CERT_FILE"),
        std::env::var("SSL_CERT_DIR")
    );
}
