//! Rendering a converted image's tree while its layers are imported: each layer is written
//! over the ones below, on a thread of its own, as soon as every layer below it is written. A
//! layer still being imported is read as its import writes it, so that the render follows the
//! import rather than waiting for it to end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rkt_store::tree::ChainRender;
use rkt_store::{BlobStopper, GrowingBlob, ImageId, Store, StoreError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What the imports tell the render about layer `index` (0 = bottom).
enum Event {
    /// Its import has started writing this blob.
    Started(usize, GrowingBlob),
    /// It is in the store as this image.
    Stored(usize, ImageId),
    /// The fetch gave up: the render stops.
    Cancelled,
}

/// What a cancelled render must stop waiting for.
#[derive(Default)]
struct Cancel {
    cancelled: AtomicBool,
    blobs: Mutex<Vec<BlobStopper>>,
}

impl Cancel {
    fn stop_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for blob in self.blobs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            blob.stop();
        }
    }
}

/// Tells the render how the layers' imports go; clones go to the import tasks.
#[derive(Clone)]
pub struct LayerOrder {
    sender: UnboundedSender<Event>,
    cancel: Arc<Cancel>,
}

impl LayerOrder {
    /// Layer `index` is being written into this blob.
    pub fn started(&self, index: usize, blob: GrowingBlob) {
        // Kept before the flag is read: a cancel that comes meanwhile finds it in the list.
        self.cancel.blobs.lock().unwrap_or_else(|p| p.into_inner()).push(blob.stopper());
        if self.cancel.cancelled.load(Ordering::SeqCst) {
            blob.stopper().stop();
        }
        // A render that stopped (it failed) is simply not fed any more.
        let _ = self.sender.send(Event::Started(index, blob));
    }

    /// Layer `index` is in the store as `id`.
    pub fn stored(&self, index: usize, id: ImageId) {
        let _ = self.sender.send(Event::Stored(index, id));
    }
}

pub struct ProgressiveRender {
    order: LayerOrder,
    done: tokio::sync::oneshot::Receiver<Result<ChainRender, StoreError>>,
    /// Joined when the render is dropped unfinished, so that its staging tree is gone before
    /// the process may end.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the render knows of each layer so far.
struct Layers {
    events: UnboundedReceiver<Event>,
    growing: Vec<Option<GrowingBlob>>,
    stored: Vec<Option<ImageId>>,
}

impl Layers {
    /// Waits for the next event; an import that ended without one leaves the render unfinished.
    async fn next(&mut self) -> Result<(), StoreError> {
        match self.events.recv().await {
            Some(Event::Started(i, blob)) => self.growing[i] = Some(blob),
            Some(Event::Stored(i, id)) => self.stored[i] = Some(id),
            Some(Event::Cancelled) => return Err(StoreError::Invalid("the fetch gave up".into())),
            None => return Err(StoreError::Invalid("a layer's import ended without its layer".into())),
        }
        Ok(())
    }
}

impl ProgressiveRender {
    /// Starts the render on a thread of its own. The render cannot get ahead of the imports it
    /// follows, and whatever of it is left when they end is all there is left to do: so it runs
    /// before the imports whenever it can (a higher priority where the system allows it).
    pub fn start(store: &Store, layers: usize) -> Result<Self, StoreError> {
        let chain = store.start_chain_render()?;
        let (sender, events) = unbounded_channel::<Event>();
        let (done_sender, done) = tokio::sync::oneshot::channel();
        let store = store.clone();
        let known = Layers { events, growing: (0..layers).map(|_| None).collect(), stored: vec![None; layers] };
        let thread = std::thread::Builder::new()
            .name("render".into())
            .spawn(move || {
                raise_priority();
                let rendered = match tokio::runtime::Builder::new_current_thread().build() {
                    Ok(runtime) => runtime.block_on(render_layers(store, chain, known, layers)),
                    Err(e) => Err(StoreError::Invalid(format!("render runtime: {e}"))),
                };
                let _ = done_sender.send(rendered);
            })
            .map_err(|e| StoreError::Invalid(format!("render thread: {e}")))?;
        let order = LayerOrder { sender, cancel: Arc::default() };
        Ok(ProgressiveRender { order, done, thread: Some(thread) })
    }

    pub fn order(&self) -> LayerOrder {
        self.order.clone()
    }

    /// Puts `top` over the rendered layers and the tree into the tree store. A failure here
    /// leaves nothing: whoever renders the image next does it the ordinary way and reports.
    pub async fn finish(mut self, store: &Store, top: &ImageId) -> Result<(), StoreError> {
        let chain = (&mut self.done).await.map_err(|_| StoreError::Invalid("the render thread stopped".into()))??;
        // It has sent its result: it is ending, and has nothing left to clean up.
        self.thread = None;
        store.finish_chain_render(chain, top).await.map(drop)
    }
}

impl Drop for ProgressiveRender {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.order.cancel.stop_all();
        let _ = self.order.sender.send(Event::Cancelled);
        // Short: the render stops at its next wait or read.
        let _ = thread.join();
    }
}

/// Writes the layers bottom first, each from its blob or, while it is imported, following it.
/// When the imports stop (they failed) before a layer is there, the render ends with an error.
async fn render_layers(
    store: Store,
    mut chain: ChainRender,
    mut known: Layers,
    layers: usize,
) -> Result<ChainRender, StoreError> {
    for i in 0..layers {
        while known.stored[i].is_none() && known.growing[i].is_none() {
            known.next().await?;
        }
        if let Some(id) = known.stored[i].take() {
            store.render_next_layer(&mut chain, &id).await?;
            continue;
        }
        let blob = known.growing[i].take().expect("waited for it");
        store.render_next_growing(&mut chain, blob).await?;
        while known.stored[i].is_none() {
            known.next().await?;
        }
        chain.imported(known.stored[i].take().expect("waited for it"));
    }
    Ok(chain)
}

/// Gives the calling thread a nice value of -5 when the process may (as root); otherwise it
/// keeps its own.
fn raise_priority() {
    use nix::libc;
    let thread = nix::unistd::gettid().as_raw() as libc::id_t;
    // SAFETY: a plain syscall on the calling thread; a refusal is only an error code.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, thread, -5);
    }
}
