//! Single-stream SHA-512 throughput of the implementations at hand, on this machine's CPU.
use sha2::Digest;
use std::time::Instant;

fn main() {
    let data = vec![0x5au8; 256 * 1024];
    let rounds = 2000; // 500 MiB
    let mb = (data.len() * rounds) as f64 / 1e6;
    for _ in 0..2 {
        let t = Instant::now();
        let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA512);
        for _ in 0..rounds {
            c.update(&data);
        }
        std::hint::black_box(c.finish());
        println!("aws-lc SHA-512: {:.0} MB/s", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut h = sha2::Sha512::new();
        for _ in 0..rounds {
            h.update(&data);
        }
        std::hint::black_box(h.finalize());
        println!("sha2 SHA-512:   {:.0} MB/s", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut o = openssl::sha::Sha512::new();
        for _ in 0..rounds {
            o.update(&data);
        }
        std::hint::black_box(o.finish());
        println!("OpenSSL SHA-512: {:.0} MB/s (rkt's ImageHasher)", mb / t.elapsed().as_secs_f64());
    }
}
