//! HTTP/2 (h2c and over TLS via ALPN) and SNI certificate selection.

use edgesteer_tests::*;

#[tokio::test]
async fn h2c_and_tls_h2_are_proxied_with_sni() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let (proxy, pki) = wd
        .start_tls_proxy(
            &spec,
            &[
                &["api.covergen.ai"],
                &["api-eu.covergen.ai"],
                &["*.ap.covergen.ai"],
            ],
        )
        .await
        .unwrap();

    // h2c with prior knowledge on the plaintext listener.
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let got = get_as(&h2c, &proxy.url("/h2c"), sample_ip("DE"), None)
        .await
        .unwrap();
    assert_eq!(got.version, reqwest::Version::HTTP_2);
    assert_eq!((got.status, got.region()), (200, "eu-west"));
    // Plain HTTP/1.1 still works on the same listener.
    let h1 = reqwest::Client::new();
    let got = get_as(&h1, &proxy.url("/h1"), sample_ip("DE"), None)
        .await
        .unwrap();
    assert_eq!(got.version, reqwest::Version::HTTP_11);
    assert_eq!(got.region(), "eu-west");

    // TLS: each name must get its own certificate, or verification fails.
    let tls_addr = proxy.tls.unwrap();
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    for (name, ip, want) in [
        ("api.covergen.ai", "US", "us-east"),
        ("api-eu.covergen.ai", "US", "eu-west"),
        ("x.ap.covergen.ai", "DE", "eu-west"),
    ] {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .resolve(name, tls_addr)
            .build()
            .unwrap();
        let url = format!("https://{name}:{}/tls", tls_addr.port());
        let got = get_as(&client, &url, sample_ip(ip), None).await.unwrap();
        assert_eq!(
            got.version,
            reqwest::Version::HTTP_2,
            "{name}: ALPN should pick h2"
        );
        assert_eq!((got.status, got.region()), (200, want), "{name}");
        assert_eq!(got.body["forwarded_proto"], "https");
    }
}
