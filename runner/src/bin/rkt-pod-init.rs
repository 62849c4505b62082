//! The pod's init as a program of its own: what `rkt run` executes, from a sealed in-memory
//! copy, as PID 1 of a pod. A small binary is a small copy: `rkt run` falls back to copying
//! itself when this file is not installed beside it.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rkt_runner::init::main(&args));
}
