//! Imports one ACI file into a store and prints its ID: the store's import alone, without the
//! render that `rkt fetch` adds as root. Used by bench/import.sh.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, store_dir, file] = args.as_slice() else {
        eprintln!("usage: import STORE_DIR FILE.aci");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = rt.block_on(async {
        let store = rkt_store::Store::open(std::path::Path::new(store_dir))?;
        let file = tokio::fs::File::open(file).await.map_err(rkt_store::StoreError::Stream)?;
        store.import(file, &rkt_store::ImportOptions::default()).await
    });
    match result {
        Ok(imported) => println!("{}", imported.id),
        Err(e) => {
            eprintln!("import: {e}");
            std::process::exit(254);
        }
    }
}
