//! Rendering a converted image's tree while its layers are imported: each layer is written
//! over the ones below as soon as it and every layer below it are in the store, on a task of
//! its own, so that the render overlaps the downloads instead of following them.

use std::sync::{Arc, Mutex};

use rkt_store::tree::ChainRender;
use rkt_store::{ImageId, Store, StoreError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::task::AbortOnDrop;

/// Hands layers to the render task bottom first, whatever order their imports end in.
#[derive(Clone)]
pub struct LayerOrder(Arc<Mutex<Order>>);

struct Order {
    next: usize,
    ids: Vec<Option<ImageId>>,
    to_render: Option<UnboundedSender<ImageId>>,
}

impl LayerOrder {
    /// Layer `index` (0 = bottom) is in the store as `id`.
    pub fn stored(&self, index: usize, id: ImageId) {
        let mut order = self.0.lock().expect("not poisoned");
        order.ids[index] = Some(id);
        while let Some(Some(id)) = order.ids.get(order.next).cloned() {
            if let Some(sender) = &order.to_render {
                // A render task that stopped (it failed) is simply not fed any more.
                let _ = sender.send(id);
            }
            order.next += 1;
        }
    }
}

pub struct ProgressiveRender {
    order: LayerOrder,
    task: AbortOnDrop<Result<ChainRender, StoreError>>,
}

impl ProgressiveRender {
    pub fn start(store: &Store, layers: usize) -> Result<Self, StoreError> {
        let mut chain = store.start_chain_render()?;
        let (sender, mut receiver) = unbounded_channel::<ImageId>();
        let store = store.clone();
        let task = AbortOnDrop(tokio::spawn(async move {
            while let Some(id) = receiver.recv().await {
                store.render_next_layer(&mut chain, &id).await?;
            }
            Ok(chain)
        }));
        let order = Order { next: 0, ids: vec![None; layers], to_render: Some(sender) };
        Ok(ProgressiveRender { order: LayerOrder(Arc::new(Mutex::new(order))), task })
    }

    pub fn order(&self) -> LayerOrder {
        self.order.clone()
    }

    /// Puts `top` over the rendered layers and the tree into the tree store. A failure here
    /// leaves nothing: whoever renders the image next does it the ordinary way and reports.
    pub async fn finish(mut self, store: &Store, top: &ImageId) -> Result<(), StoreError> {
        // Every layer was handed over: closing the channel ends the task.
        self.order.0.lock().expect("not poisoned").to_render = None;
        let chain = (&mut self.task.0).await.map_err(|e| StoreError::Invalid(format!("render task: {e}")))??;
        store.finish_chain_render(chain, top).await.map(drop)
    }
}
