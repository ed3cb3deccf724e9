"""Setup page: data set, model, and the original model (trained in the worker or loaded from the cache)."""

import streamlit as st

from app_pages import _shared

st.title("Setup")
_shared.explainer(
    "Pick a **data set** and a **model**. The *original* model is trained once on the whole training set and then "
    "cached on disk, so every later visit loads it instantly. Every unlearning method starts from this model and "
    "is judged against a model **retrained** without the forget set (the gold standard, trained on first use). "
    "The embedded default (5,000 MNIST digits with a small CNN) needs no download.")

from unlearn_core.data import DATASETS, IMAGEFOLDER_PREFIX, default_model_for  # noqa: E402 (after the title)
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.forget import MAX_SEED  # noqa: E402
from unlearn_core.models import MODELS  # noqa: E402

dataset_options = list(DATASETS) + ["imagefolder (my images)"]
current_dataset = st.session_state["dataset"]
if "w_dataset" not in st.session_state:
    st.session_state["w_dataset"] = (current_dataset if current_dataset in DATASETS
                                     else "imagefolder (my images)")
left, right = st.columns(2)
with left:
    picked = st.selectbox("Data set", dataset_options, key="w_dataset",
                          format_func=lambda n: f"{n} — {DATASETS[n].description}" if n in DATASETS else n,
                          help="Embedded sets load offline; torchvision sets need their files in the data directory.")
    dataset = picked
    if picked == "imagefolder (my images)":
        folder = st.text_input("Image folder (one sub-folder per class, inside UNLEARN_IMAGE_ROOT)",
                               value=current_dataset[len(IMAGEFOLDER_PREFIX):]
                               if current_dataset.startswith(IMAGEFOLDER_PREFIX) else "",
                               key="w_folder")
        dataset = IMAGEFOLDER_PREFIX + folder.strip() if folder.strip() else ""
if not dataset:
    st.info("Enter a folder name to load your own images.")
    _shared.stop()
if dataset != st.session_state["dataset"]:
    st.session_state["dataset"] = dataset
    st.session_state["model"] = ""
    st.session_state["w_model"] = default_model_for(dataset)
    st.session_state["forget"] = "class:0" if dataset.startswith(IMAGEFOLDER_PREFIX) else "class:3"
    st.session_state["forget_pending"] = False  # a hand-picked set in progress belonged to the old data set

try:
    from unlearn_core.data import load_arrays

    with st.spinner("Loading the data set ..."):
        bundle = load_arrays(dataset)  # arrays: counting and showing images needs no torch
except UnlearnError as error:
    _shared.show_error(error)
    _shared.stop()

with right:
    if "w_model" not in st.session_state:
        st.session_state["w_model"] = st.session_state["model"] or default_model_for(dataset)
    model = st.selectbox("Model", list(MODELS), key="w_model",
                         format_func=lambda n: f"{n} — {MODELS[n].description}")
    st.session_state["model"] = model
    if "w_seed" not in st.session_state:
        st.session_state["w_seed"] = int(st.session_state["seed"])
    st.session_state["seed"] = int(st.number_input(
        "Seed", min_value=0, max_value=MAX_SEED, step=1, key="w_seed",
        help="Seeds the original model's training and a random forget set; another seed is another model."))

current = _shared.choice()
info = bundle.describe()
cols = st.columns(4)
cols[0].metric("Training images", f"{info['train']:,}")
cols[1].metric("Test images", f"{info['test']:,}")
cols[2].metric("Classes", info["classes"])
cols[3].metric("Image shape", "×".join(str(v) for v in info["image_shape"]))
if bundle.notes.get("skipped"):
    st.warning(f"Skipped {bundle.notes['skipped']} file(s) that are not readable images.")

st.subheader("Original model")
runner = _shared.runner()
try:
    st.caption(f"Where runs execute: {_shared.md(runner.engine.where(wait=False))}", help=(
        "The server's UNLEARN_ENGINE: inline runs every job in the app's own process, one at a time; ray runs "
        "the unlearning runs as Ray tasks, on a local Ray bound to 127.0.0.1 or on the cluster at "
        "UNLEARN_RAY_ADDRESS (docs/SWEEPS.md)."))
except UnlearnError as error:  # Ray missing, or the cluster cannot be joined
    _shared.show_error(error)
# Only this session's training for this very choice: another visitor's job (or this session's job for another
# data set) used to replace the Train button with "Training ..." for everyone.
setup_jobs = [j for j in runner.active("setup", _shared.session_owner())
              if j.snapshot().meta.get("choice") == list(current.key())]
ready = _shared.original_ready(current)
if ready:
    from unlearn_app.state import ModelCard, cached_original_card

    # The trained original's figures are in its checkpoint's metadata: the first page shows them without torch.
    card = None if current.original else cached_original_card(current.dataset, current.model, current.seed)
    if card is None:  # an upload, or a checkpoint saved before its metadata held these figures
        from unlearn_app.display import model_size
        from unlearn_core.training import accuracy

        try:
            setup = _shared.setups().get(current, with_retrain=False)
        except UnlearnError as error:
            _shared.show_error(error)
            _shared.stop()

        # Keyed by the model's key: a cache key for a trained model (its file is never overwritten by an upload)
        # or the upload's content hash, so a figure can never belong to other weights than those shown.
        @st.cache_data(show_spinner=False)
        def _test_accuracy(model_key: str, _setup) -> float:
            stored = _setup.original.meta.get("test_accuracy")  # written at training time
            if stored is not None:
                return float(stored)
            return accuracy(_setup.original.model, _setup.bundle.test_x, _setup.bundle.test_y, _setup.device)

        size = model_size(setup.original.model)
        card = ModelCard(_test_accuracy(setup.original.key, setup), size["parameters"], size["mib"],
                         setup.original.train_seconds)
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{card.test_accuracy:.2f} %")
    cols[1].metric("Parameters", f"{card.parameters:,}")
    cols[2].metric("Weights", f"{card.mib:.2f} MiB")
    trained = card.train_seconds
    cols[3].metric("Training time", f"{trained:.1f} s" if trained == trained else "uploaded")
    if current.original:
        st.success(f"Original {current.model} on {_shared.md(current.dataset)} is ready: your uploaded checkpoint "
                   f"(SHA-256 {current.original[:12]}...).", icon=":material/check_circle:")
        if st.button("Use the trained original instead", icon=":material/undo:"):
            st.session_state["original"] = ""
            st.rerun()
    else:
        st.success(f"Original {current.model} on {_shared.md(current.dataset)} is ready (cached on disk).",
                   icon=":material/check_circle:")
elif setup_jobs:
    st.info("Training the original model ...")
else:
    st.info("No cached original model for this choice yet.")
    if st.button("Train the original model", type="primary", icon=":material/model_training:"):
        request = current

        def train(progress, cancel):
            return _shared.setups().get(request, progress, cancel, with_retrain=False)

        try:
            # On UNLEARN_ENGINE=ray the training itself runs as a Ray task; train() then loads it from the cache.
            runner.submit_setup(f"train original {current.model} on {current.dataset}", train,
                                meta={"owner": _shared.session_owner(), "choice": list(current.key())},
                                original={"dataset": current.dataset, "model": current.model,
                                          "seed": current.seed, "device": current.device})
        except UnlearnError as error:  # the per-session queue limit
            _shared.show_error(error)
        else:
            st.rerun()

st.subheader("Ready for the class")
from unlearn_core.demo import demo_status, prepare_demo  # noqa: E402

demo_jobs = [j for j in runner.active("setup", _shared.session_owner())
             if j.snapshot().meta.get("demo") == [current.dataset, current.model, current.seed]]
try:
    readiness = demo_status(current.dataset, current.model, current.seed)
except UnlearnError as error:
    readiness = None
    _shared.show_error(error)
if readiness is not None:
    cols = st.columns([3, 1])
    cols[0].markdown(f"**{readiness.line()}** for {_shared.md(current.dataset)} · {current.model} · seed "
                     f"{current.seed}: a demo forgetting any one class then waits only for its method.")
    if demo_jobs:
        cols[1].caption("Preparing ...")
    elif readiness.complete:
        cols[1].success("Demo ready", icon=":material/check_circle:")
    elif cols[1].button("Prepare a demo", icon=":material/school:", key="w_prepare_demo",
                        help="Train the original and the retrained reference of every single-class forget set in "
                             "the background, one after another. Each is cached as soon as it is trained, so a "
                             "stopped preparation resumes where it stopped (also: python -m unlearn_core prepare)."):
        demo_choice = current

        def prepare_all(progress, cancel):
            return prepare_demo(demo_choice.dataset, demo_choice.model, demo_choice.seed, progress=progress,
                                cancel=cancel)

        try:
            runner.submit(f"prepare a demo: {current.model} on {current.dataset}, every class", prepare_all,
                          kind="setup", meta={"owner": _shared.session_owner(),
                                              "demo": [current.dataset, current.model, current.seed],
                                              # what it will train: the budgets count models, not jobs
                                              "trainings": (0 if readiness.original else 1)
                                              + readiness.total - readiness.ready})
        except UnlearnError as error:  # the per-session queue limit
            _shared.show_error(error)
        else:
            st.rerun()
_shared.jobs_panel("setup", title="Training")

with st.expander("Upload a checkpoint for this model (optional)"):
    st.caption("A PyTorch state dict saved from the same architecture. It is checked key by key, shape by shape and "
               "in the model's number types, and a batch of test images must give finite outputs; pickled code and "
               "compressed archives are refused. An upload is kept apart from the trained models (by its content "
               "hash) and " + ("only for this browser session." if _shared.shared() else "never replaces them."))
    uploaded = st.file_uploader("Checkpoint (.pt)", type=["pt", "pth", "bin"], key="w_upload")
    if uploaded is not None:
        from unlearn_app.uploads import accept_upload

        # Checked once per file and choice, not on every rerun: a hostile file costs its check once.
        file_key = [uploaded.file_id, uploaded.size, current.dataset, current.model, current.seed]
        checked = st.session_state.get("upload_checked")
        if checked is None or checked["file"] != file_key:
            try:
                with st.spinner("Checking the checkpoint ..."):
                    accepted = accept_upload(uploaded.getvalue(), current.dataset, current.model, current.seed)
            except UnlearnError as error:
                checked = {"file": file_key, "error": str(error)}
            else:
                _shared.setups().add_upload(_shared.upload_owner(), accepted)
                checked = {"file": file_key, "sha": accepted.sha256, "accuracy": accepted.test_accuracy}
            st.session_state["upload_checked"] = checked
        if "error" in checked:
            _shared.show_error(checked["error"])
        else:
            st.success(f"The checkpoint fits {current.model}: test accuracy {checked['accuracy']:.2f} %.")
            if current.original == checked["sha"]:
                st.caption("It is the original model of this session now.")
            elif st.button("Use it as the original model"):
                if _shared.setups().upload(_shared.upload_owner(), checked["sha"]) is None:
                    st.session_state.pop("upload_checked", None)  # let go by the server: check it again
                else:
                    st.session_state["original"] = checked["sha"]
                st.rerun()

st.subheader("Examples per class")
from unlearn_app.display import display_scale, gallery_indices, image_strip, to_display  # noqa: E402

per_class = gallery_indices(bundle.train_y, per_class=6, seed=0)
scale = display_scale(bundle.image_size)
shown = list(per_class.items())[:20]
for row_start in range(0, len(shown), 2):
    cols = st.columns(2)
    for col, (cls, indices) in zip(cols, shown[row_start:row_start + 2]):
        with col:
            st.caption(f"class {cls}: **{bundle.class_names[cls]}** "
                       f"({int((bundle.train_y == cls).sum())} training images)")
            thumbs = to_display(bundle.train_x[indices], scale)
            # One strip per class, each thumbnail drawn 56 px wide with 8 px between them.
            st.image(image_strip(thumbs, gap=8 * thumbs[0].shape[1] // 56 or 1),
                     width=56 * len(thumbs) + 8 * (len(thumbs) - 1))
