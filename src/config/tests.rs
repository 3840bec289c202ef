use super::*;
use std::collections::HashMap;

fn config(args: Args, env: &[(&str, &str)]) -> Result<Config> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_args(args, &move |k| env.get(k).cloned())
}

#[test]
fn embedded_defaults_serve_on_5000_beside_the_binary() {
    let c = config(Args::default(), &[]).unwrap();
    assert_eq!(c.mode, Mode::Serve);
    assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("./atoll-data"));
    assert_eq!(c.log_level, LevelFilter::Info);
    assert!(!c.read_only && !c.no_delete);
}

#[test]
fn environment_fills_in_and_flags_win() {
    let env = [
        ("ATOLL_LISTEN", "127.0.0.1:7000"),
        ("ATOLL_DATA_DIR", "/srv/a"),
        ("ATOLL_NO_DELETE", "yes"),
    ];
    let c = config(Args::default(), &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
    assert!(c.no_delete);
    let args = Args {
        listen: Some(":9000".into()),
        ..Args::default()
    };
    let c = config(args, &env).unwrap();
    assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
}

#[test]
fn tls_and_login_choices_are_checked() {
    let args = Args {
        tls_cert: Some("c.pem".into()),
        ..Args::default()
    };
    assert!(config(args, &[])
        .unwrap_err()
        .to_string()
        .contains("--tls-cert needs --tls-key"));
    let args = Args {
        tls_auto: true,
        tls_cert: Some("c.pem".into()),
        ..Args::default()
    };
    assert!(config(args, &[])
        .unwrap_err()
        .to_string()
        .contains("choose one"));
    let c = config(
        Args {
            tls_auto: true,
            ..Args::default()
        },
        &[("ATOLL_HOSTNAME", "a.lan, 10.0.0.5")],
    )
    .unwrap();
    assert_eq!(
        c.tls,
        Some(TlsSource::Auto {
            dir: PathBuf::from("./atoll-data/tls"),
            hostnames: vec!["a.lan".into(), "10.0.0.5".into()]
        })
    );
    let e = config(
        Args {
            tls_auto: true,
            hostname: vec!["bad name".into()],
            ..Args::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("\"bad name\""), "{e}");
    let e = config(
        Args {
            anonymous_pull: true,
            ..Args::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("--anonymous-pull needs"), "{e}");
    let e = config(Args::default(), &[("ATOLL_USERNAME", "ci")]).unwrap_err();
    assert!(e.to_string().contains("ATOLL_PASSWORD is not"), "{e}");
    let c = config(
        Args::default(),
        &[("ATOLL_USERNAME", "ci"), ("ATOLL_PASSWORD", "pw")],
    )
    .unwrap();
    assert_eq!(c.auth.single_user, Some(("ci".into(), "pw".into())));
}

#[test]
fn gc_durations_are_checked() {
    let c = config(Args::default(), &[]).unwrap();
    assert_eq!(
        (c.gc.grace, c.gc.interval, c.gc.upload_ttl),
        (3600, 86_400, 86_400)
    );
    let e = config(
        Args {
            gc_grace: Some("soon".into()),
            ..Args::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("--gc-grace: \"soon\""), "{e}");
    let e = config(
        Args {
            dry_run: true,
            ..Args::default()
        },
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--dry-run only applies to --gc"),
        "{e}"
    );
    let c = config(
        Args {
            gc: true,
            dry_run: true,
            ..Args::default()
        },
        &[("ATOLL_GC_INTERVAL", "0")],
    )
    .unwrap();
    assert_eq!((c.mode, c.gc.dry_run, c.gc.interval), (Mode::Gc, true, 0));
}

#[test]
fn cache_settings() {
    let c = config(
        Args {
            upstream: vec!["https://r".into()],
            ..Args::default()
        },
        &[
            ("ATOLL_CACHE_PIN", "library/*, team/base"),
            ("ATOLL_CACHE_MAX_BYTES", "10G"),
        ],
    )
    .unwrap();
    assert_eq!(c.cache.upstreams, vec!["https://r"]);
    assert_eq!(c.cache.pins, vec!["library/*", "team/base"]);
    assert_eq!(c.cache.max_bytes, Some(10 << 30));
    assert_eq!(
        (c.cache.ttl, c.cache.evict_interval, c.cache.tag_timeout),
        (7 * 86_400, 3600, 3)
    );
    let e = config(Args::default(), &[("ATOLL_CACHE_MAX_BYTES", "lots")]).unwrap_err();
    assert!(e.to_string().contains("ATOLL_CACHE_MAX_BYTES"), "{e}");
}

#[test]
fn bad_values_name_their_source() {
    let args = Args {
        listen: Some("nowhere".into()),
        ..Args::default()
    };
    let e = config(args, &[]).unwrap_err().to_string();
    assert!(e.starts_with("--listen: \"nowhere\""), "{e}");
    let e = config(Args::default(), &[("ATOLL_LOG_LEVEL", "loud")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ATOLL_LOG_LEVEL: \"loud\""), "{e}");
    let e = config(Args::default(), &[("ATOLL_READ_ONLY", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("ATOLL_READ_ONLY"), "{e}");
}

#[test]
fn the_blob_store_is_the_disk_unless_a_bucket_is_named_and_redirects_need_one() {
    assert_eq!(
        config(Args::default(), &[]).unwrap().blobs,
        StoreConfig::Disk
    );
    let disk = [("ATOLL_BLOB_STORE", "disk")];
    assert_eq!(
        config(Args::default(), &disk).unwrap().blobs,
        StoreConfig::Disk
    );
    let bucket = [
        ("ATOLL_BLOB_STORE", "s3://images/site"),
        ("ATOLL_S3_ENDPOINT", "http://127.0.0.1:3900"),
        ("ATOLL_S3_ACCESS_KEY_ID", "GK1"),
        ("ATOLL_S3_SECRET_ACCESS_KEY", "s"),
        ("ATOLL_BLOB_REDIRECT", "yes"),
    ];
    let c = config(Args::default(), &bucket).unwrap();
    assert!(c.blob_redirect);
    match &c.blobs {
        StoreConfig::S3(s3) => assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("images", "site/")
        ),
        other => panic!("{other:?}"),
    }
    let e = config(Args::default(), &[("ATOLL_BLOB_REDIRECT", "1")]).unwrap_err();
    assert!(
        e.to_string().contains("--blob-redirect needs an s3://"),
        "{e}"
    );
    let e = config(Args::default(), &[("ATOLL_BLOB_STORE", "/mnt/blobs")]).unwrap_err();
    assert!(
        e.to_string().contains("expected disk or s3://BUCKET"),
        "{e}"
    );
}
