//! The CPU that inflating gzip layers and taking the BLAKE3 digests of their bytes cost with the
//! decoder and hasher rkt uses (flate2 over zlib-rs, blake3), for bench/floor.sh. Each file is
//! read into memory first; prints the medians of three rounds, in seconds.
//! Usage: inflate_cpu GZIP_FILE...
use std::io::Read;
use std::time::Instant;

fn main() {
    let layers: Vec<Vec<u8>> =
        std::env::args().skip(1).map(|p| std::fs::read(&p).expect("a readable gzip file")).collect();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut inflate = Vec::new();
    let mut digest = Vec::new();
    for _ in 0..3 {
        let (mut inflating, mut hashing) = (0.0, 0.0);
        for layer in &layers {
            let mut decoder = flate2::read::MultiGzDecoder::new(&layer[..]);
            let mut hasher = blake3::Hasher::new();
            loop {
                let start = Instant::now();
                let n = decoder.read(&mut chunk).expect("a whole gzip stream");
                inflating += start.elapsed().as_secs_f64();
                if n == 0 {
                    break;
                }
                let start = Instant::now();
                hasher.update(&chunk[..n]);
                hashing += start.elapsed().as_secs_f64();
            }
            std::hint::black_box(hasher.finalize());
        }
        inflate.push(inflating);
        digest.push(hashing);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{:.3} {:.3}", median(inflate), median(digest));
}
