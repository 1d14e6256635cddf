"""Review tab: fix clusters, proofread clips by ear and keyboard, record prompts, export.

Handlers stay thin: they read the widgets, call ``projects.review``,
``projects.prompts`` or ``projects.export``, and format what comes back. Every
edit is written to SQLite by those calls at once; the page holds only the
current position in the clip list.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.context import Context

from projects import export, projects as project_store, prompts, review
from projects.errors import BadInput
from studio.common import Studio, ui_errors

SPEAKER_HEADERS = ["id", "Speaker", "Origin", "Clips", "Accepted", "Minutes", "Mean SNR (dB)",
                   "Mean confidence", "Flagged", "Training"]
CLIP_HEADERS = ["id", "State", "Length (s)", "Flags", "Transcript"]
SIMILAR_HEADERS = ["id", "Score", "Speaker", "Transcript"]
SPLIT_HEADERS = ["Group", "Clips", "Examples"]
TAKE_HEADERS = ["#", "Prompt", "Length (s)", "Warnings"]
FORMAT_HELP = {"ljspeech": "LJSpeech: wavs/ + metadata.csv (id|text|normalized)",
               "vits": "VITS filelist: wavs/ + filelist.txt (path|text)",
               "multi": "Multi-speaker filelist: path|speaker|text for every chosen speaker",
               "rvc": "RVC: audio only (wavs/)"}
SHIPPED_DEFAULT = "en_voice_studio"
UPLOADED = "Uploaded file"

KEYS_HELP = ("**Keys** (when not typing): **Space** play/pause · **A** accept + next · "
             "**R** reject + next · **E** edit transcript (Enter saves, Esc leaves) · "
             "**N** next · **B** back · **U** undo")

#: A key whose request got no answer in this long is given up on, so the queue never stalls.
KEY_STALL_MS = 30_000
#: All proofreading edits share one server slot: they run one at a time, in arrival order.
PROOF_QUEUE = "review-proofread"

# Clicks the Proofread buttons by elem_id; inert while the user types or the panel is hidden.
# Keys wait in a queue: a key that talks to the server is sent only once the previous one has
# been answered (KEY_DONE_JS runs after each), so fast typing acts on the right clips, in order.
KEYS_JS = """
() => {
  if (window.vsReviewKeys) return;
  window.vsReviewKeys = true;
  const queue = [];
  let busy = false, stall = null, editQueued = false;
  const click = (id) => { const b = document.getElementById(id); if (b) b.click(); return !!b; };
  const playPause = () => {
    const root = document.getElementById('proof-audio');
    if (!root) return false;
    const media = root.querySelector('audio');
    if (media) { media.paused ? media.play() : media.pause(); return false; }
    const b = root.querySelector('button[aria-label="Play"], button[aria-label="Pause"],'
                                 + ' button.play-pause-button');
    if (b) b.click();
    return false;
  };
  const edit = () => {
    editQueued = false;
    const box = document.querySelector('#proof-text textarea, #proof-text input');
    if (box) { box.focus(); box.setSelectionRange(box.value.length, box.value.length); }
    return false;
  };
  const pump = () => {
    while (!busy && queue.length) {
      if (queue.shift()()) { busy = true; stall = setTimeout(done, %d); }
    }
  };
  const done = () => { clearTimeout(stall); busy = false; pump(); };
  window.vsProofDone = () => { if (busy) done(); };
  window.vsProofPending = () => queue.length + (busy ? 1 : 0);
  document.addEventListener('keydown', (e) => {
    const panel = document.getElementById('proof-panel');
    if (!panel || panel.offsetParent === null) return;
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' || t.isContentEditable);
    if (typing) {
      // Leaving the box saves it (blur event); Enter also submits, so both keys save.
      if (t.closest('#proof-text') && (e.key === 'Escape' || e.key === 'Enter')) t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {a: 'proof-accept', r: 'proof-reject', n: 'proof-next', b: 'proof-prev',
                     u: 'proof-undo'};
    const key = e.key.toLowerCase();
    let act = null;
    if (actions[key]) act = () => click(actions[key]);
    else if (e.key === ' ') act = playPause;
    else if (key === 'e') act = edit;
    if (!act) return;
    e.preventDefault();
    // Letters typed while an edit waits its turn are meant for the box, never commands.
    if (editQueued) return;
    if (act === edit) editQueued = true;
    queue.push(act);
    pump();
  });
}
""" % KEY_STALL_MS
KEY_DONE_JS = "() => { if (window.vsProofDone) window.vsProofDone(); }"


# ------------------------------------------------------------------ formatting

def _project(studio: Studio, name: str | None):
    if not name:
        raise BadInput("Create or open a project first (Projects tab).")
    return project_store.get_project(studio.store, name)


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def speaker_rows(studio: Studio, project: str | None) -> list[list]:
    """The cluster overview table."""
    if not project:
        return []
    p = _project(studio, project)
    return [[s.id, s.name, s.origin, s.clips, s.accepted, round(s.minutes, 2),
             _fmt(s.mean_snr_db, ".1f"), _fmt(s.mean_confidence, ".2f"), s.flagged,
             "yes" if s.use_for_training else ""] for s in review.overview(studio.store, p.id)]


def speaker_choices(studio: Studio, project: str | None, unassigned: bool = True) -> list:
    """(label, id) pairs for speaker pickers."""
    if not project:
        return []
    p = _project(studio, project)
    return [(f"{s.name} ({s.clips} clips)", s.id) for s in review.overview(studio.store, p.id)
            if unassigned or s.id != review.UNASSIGNED]


def clip_rows(clips) -> list[list]:
    """Rows of a clip table."""
    return [[c.id, c.review, round(c.duration_s, 2), ", ".join(c.flags), c.text] for c in clips]


def _audio_of(studio: Studio, clip) -> str | None:
    path = studio.ws.resolve(clip.path)
    return str(path) if path.exists() else None


def _ids(text: str) -> list[int]:
    """Clip ids typed as "12, 15 20"."""
    parts = str(text or "").replace(",", " ").split()
    if not parts or not all(p.isdigit() for p in parts):
        raise BadInput("Type clip ids as numbers, e.g. 12, 15, 20.")
    return [int(p) for p in parts]


def _map_frame(studio: Studio, project: str | None) -> pd.DataFrame:
    points = review.embedding_map(studio.store, _project(studio, project).id) if project else []
    return pd.DataFrame(points or [], columns=["clip_id", "x", "y", "speaker_id", "speaker"])


# --------------------------------------------------------------------- clusters

def _build_clusters(studio: Studio, current: gr.Dropdown):
    gr.Markdown("One row per speaker found by clustering (or made by you). Pick a speaker to "
                "hear its most typical clip and list its clips; the map shows every clip's "
                "voice, nearby points sound alike.")
    table = gr.Dataframe(headers=SPEAKER_HEADERS, interactive=False, elem_id="review-speakers",
                         label="Speakers")
    with gr.Row():
        pick = gr.Dropdown(label="Speaker", choices=[], elem_id="cluster-pick", scale=2)
        sample = gr.Audio(label="Representative clip", type="filepath", interactive=False,
                          elem_id="cluster-sample", scale=3)
    # Gradio 6's native plots report .select as an x-range brush ([x_min, x_max]), never the
    # clicked point, so a point cannot open its clip; the tooltip names the clip id instead.
    plot = gr.ScatterPlot(x="x", y="y", color="speaker", label="Voice map (PCA of embeddings)",
                          elem_id="review-map", tooltip=["clip_id", "speaker"], height=300)
    clips = gr.Dataframe(headers=CLIP_HEADERS, interactive=False, elem_id="cluster-clips",
                         label="Clips of this speaker (click a row to listen)")
    listen = gr.Audio(label="Clip", type="filepath", interactive=False, elem_id="cluster-listen")
    with gr.Accordion("Name, training, merge, move", open=True):
        with gr.Row():
            name = gr.Textbox(label="Name this speaker", elem_id="speaker-name", scale=3)
            name_btn = gr.Button("Rename", elem_id="rename-speaker", scale=1)
            train = gr.Checkbox(label="Use for training", elem_id="speaker-training", scale=1)
        with gr.Row():
            merge_pick = gr.Dropdown(label="Merge these speakers into the chosen one",
                                     choices=[], multiselect=True, elem_id="merge-pick", scale=3)
            merge_btn = gr.Button("Merge", elem_id="merge-speakers", scale=1)
        with gr.Row():
            move_ids = gr.Textbox(label="Clip ids to move", placeholder="12, 15, 20",
                                  elem_id="move-ids", scale=2)
            move_to = gr.Dropdown(label="Move to speaker", choices=[], elem_id="move-to", scale=2)
            move_btn = gr.Button("Move clips", elem_id="move-clips", scale=1)
    with gr.Accordion("Split this speaker", open=False):
        with gr.Row():
            threshold = gr.Slider(0.5, 0.99, value=review.default_split_criteria(), step=0.01,
                                  label="Similarity threshold (higher splits more)",
                                  elem_id="split-threshold", scale=3)
            preview_btn = gr.Button("Preview split", elem_id="split-preview", scale=1)
            apply_btn = gr.Button("Apply split", elem_id="split-apply", scale=1)
        split_table = gr.Dataframe(headers=SPLIT_HEADERS, interactive=False, elem_id="split-table")
        groups = gr.State([])
    with gr.Accordion("Find a speaker across all recordings", open=False):
        with gr.Row():
            seeds = gr.Textbox(label="A few clip ids of one voice", placeholder="12, 15",
                               elem_id="find-seeds", scale=3)
            find_btn = gr.Button("Find similar clips", elem_id="find-similar", scale=1)
        similar = gr.Dataframe(headers=SIMILAR_HEADERS, interactive=False, elem_id="similar-table")
        with gr.Row():
            min_score = gr.Slider(0.0, 1.0, value=0.75, step=0.01, elem_id="pull-min",
                                  label="Pull clips scoring at least", scale=3)
            pull_btn = gr.Button("Pull them into the chosen speaker", elem_id="pull-in", scale=2)
    with gr.Row():
        undo_btn = gr.Button("Undo last change", elem_id="cluster-undo")
        refresh_btn = gr.Button("Refresh", elem_id="cluster-refresh")
    status = gr.Markdown(elem_id="cluster-status")

    def _speaker_view(project, speaker_id):
        if not project or speaker_id is None:
            return None, [], "", False
        p = _project(studio, project)
        summary = {s.id: s for s in review.overview(studio.store, p.id)}.get(int(speaker_id))
        if summary is None:
            return None, [], "", False
        rep = summary.representative_clip_id
        audio = _audio_of(studio, review.get_clip(studio.store, rep)) if rep else None
        return (audio, clip_rows(review.list_clips(studio.store, p.id, int(speaker_id))),
                summary.name, summary.use_for_training)

    @ui_errors
    def refresh(project, speaker_id=None):
        choices = speaker_choices(studio, project)
        ids = [c[1] for c in choices]
        speaker_id = speaker_id if speaker_id in ids else (ids[0] if ids else None)
        named = [c for c in choices if c[1] != review.UNASSIGNED]
        return (speaker_rows(studio, project), gr.Dropdown(choices=choices, value=speaker_id),
                gr.Dropdown(choices=named, value=[]), gr.Dropdown(choices=choices),
                _map_frame(studio, project), *_speaker_view(project, speaker_id))

    refreshed = [table, pick, merge_pick, move_to, plot, sample, clips, name, train]

    @ui_errors
    def show(project, speaker_id):
        return _speaker_view(project, speaker_id)

    def after(message):
        """Wrap an action: run it, then refresh everything and report."""
        def run(project, speaker_id, *args):
            text = message(project, speaker_id, *args)
            return (*refresh(project, speaker_id), text)
        return ui_errors(run)

    def _need(speaker_id):
        if speaker_id is None or int(speaker_id) == review.UNASSIGNED:
            raise BadInput("Choose a speaker first.")
        return int(speaker_id)

    def do_rename(project, speaker_id, new_name):
        review.name_speaker(studio.store, _need(speaker_id), new_name)
        return f"Renamed to {new_name.strip()}."

    def do_train(project, speaker_id, use):
        if speaker_id is None or int(speaker_id) == review.UNASSIGNED:
            return ""
        review.set_training(studio.store, int(speaker_id), bool(use))
        return "Marked for training." if use else "No longer marked for training."

    def do_merge(project, speaker_id, others):
        others = [int(o) for o in others or []]
        moved = review.merge_speakers(studio.store, _need(speaker_id), others)
        return f"Merged {len(others)} speaker(s) into this one ({moved} clips moved)."

    def do_move(project, speaker_id, ids_text, target):
        if target is None:
            raise BadInput("Choose the speaker to move the clips to.")
        count = review.move_clips(studio.store, _ids(ids_text), int(target))
        return f"Moved {count} clip(s)."

    def do_undo(project, speaker_id):
        what = review.undo(studio.store, studio.ws, _project(studio, project).id)
        return f"Undid: {what}." if what else "Nothing to undo."

    outs = refreshed + [status]
    name_btn.click(after(do_rename), [current, pick, name], outs, api_name="rename_speaker")
    train.input(after(do_train), [current, pick, train], outs, api_visibility="private")
    merge_btn.click(after(do_merge), [current, pick, merge_pick], outs, api_name="merge_speakers")
    move_btn.click(after(do_move), [current, pick, move_ids, move_to], outs, api_name="move_clips")
    undo_btn.click(after(do_undo), [current, pick], outs, api_name="undo_cluster_edit")
    refresh_btn.click(refresh, [current, pick], refreshed, api_visibility="private")
    current.change(refresh, [current], refreshed, api_visibility="private")
    pick.input(show, [current, pick], [sample, clips, name, train], api_visibility="private")

    @ui_errors
    def preview(project, speaker_id, criteria):
        found = review.preview_split(studio.store, _need(speaker_id), criteria)
        rows = [[n + 1, len(g), " / ".join(review.get_clip(studio.store, i).text[:40]
                                            for i in g[:2])] for n, g in enumerate(found)]
        return rows, found

    def do_split(project, speaker_id, found):
        if not found:
            raise BadInput("Preview the split first.")
        made = review.apply_split(studio.store, _need(speaker_id), found)
        return f"Split into {len(made)} speakers."

    preview_btn.click(preview, [current, pick, threshold], [split_table, groups],
                      api_name="preview_split")
    apply_btn.click(after(do_split), [current, pick, groups], outs, api_name="apply_split")

    @ui_errors
    def find(project, seed_text):
        p = _project(studio, project)
        names = {s["id"]: s["name"] for s in review.list_speakers(studio.store, p.id)}
        ranked = review.find_similar(studio.store, p.id, _ids(seed_text))
        return [[c.id, round(score, 3), names.get(c.speaker_id, "Unassigned"), c.text]
                for c, score in ranked]

    def do_pull(project, speaker_id, seed_text, least):
        p = _project(studio, project)
        seeds_ = _ids(seed_text)
        chosen = [c.id for c, s in review.find_similar(studio.store, p.id, seeds_) if s >= least]
        count = review.pull_in(studio.store, _need(speaker_id), chosen + seeds_)
        return f"Pulled {count} clip(s) into this speaker."

    find_btn.click(find, [current, seeds], [similar], api_name="find_similar")
    pull_btn.click(after(do_pull), [current, pick, seeds, min_score], outs, api_name="pull_in")

    def play_row(rows, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        clip_id = int(rows.iloc[row, 0]) if hasattr(rows, "iloc") else int(rows[row][0])
        return _audio_of(studio, review.get_clip(studio.store, clip_id))

    clips.select(ui_errors(play_row), [clips], [listen], api_visibility="private")
    similar.select(ui_errors(play_row), [similar], [listen], api_visibility="private")
    return refresh, refreshed


# ------------------------------------------------------------------ proofreading

def _build_proofread(studio: Studio, current: gr.Dropdown):
    with gr.Column(elem_id="proof-panel"):
        gr.Markdown(KEYS_HELP, elem_id="proof-keys")
        with gr.Row():
            speaker = gr.Dropdown(label="Speaker", choices=[], elem_id="proof-speaker", scale=2)
            which = gr.Dropdown(list(review.CLIP_FILTERS), value="all", label="Show",
                                elem_id="proof-filter", scale=1)
            order = gr.Dropdown(list(review.CLIP_SORTS), value="order", label="Sort",
                                elem_id="proof-sort", scale=1)
        info = gr.Markdown(elem_id="proof-info")
        audio = gr.Audio(type="filepath", interactive=False, label="Clip", elem_id="proof-audio")
        text = gr.Textbox(label="Transcript (E to edit, Enter to save)", lines=1, max_lines=4,
                          elem_id="proof-text")
        with gr.Row():
            prev_btn = gr.Button("◀ Back (B)", elem_id="proof-prev")
            accept_btn = gr.Button("Accept (A)", variant="primary", elem_id="proof-accept")
            reject_btn = gr.Button("Reject (R)", variant="stop", elem_id="proof-reject")
            next_btn = gr.Button("Next (N) ▶", elem_id="proof-next")
            undo_btn = gr.Button("Undo (U)", elem_id="proof-undo")
        with gr.Accordion("Trim or split this clip", open=False):
            with gr.Row():
                trim_start = gr.Number(label="Keep from (s)", value=0.0, elem_id="trim-start")
                trim_end = gr.Number(label="Keep to (s)", value=0.0, elem_id="trim-end")
                trim_btn = gr.Button("Trim", elem_id="trim-clip")
            with gr.Row():
                word = gr.Dropdown(label="Split before word", choices=[], elem_id="split-word")
                split_btn = gr.Button("Split here", elem_id="split-clip")
        with gr.Row():
            reject_flagged_btn = gr.Button("Reject all flagged", elem_id="reject-flagged")
            accept_all_btn = gr.Button("Accept all in speaker", elem_id="accept-all")
        table = gr.Dataframe(headers=CLIP_HEADERS, interactive=False, elem_id="proof-clips",
                             label="Clips (click a row to open it)")
    ids, pos = gr.State([]), gr.State(0)

    def view(project, clip_ids, position):
        if not clip_ids:
            return ("No clips here yet.", None, "", gr.Dropdown(choices=[], value=None), 0.0, 0.0,
                    0, [])
        position = max(0, min(int(position), len(clip_ids) - 1))
        clip = review.get_clip(studio.store, clip_ids[position])
        flags = ", ".join(clip.flags) or "none"
        conf = clip.quality.get("confidence")
        head = (f"**Clip {position + 1} of {len(clip_ids)}** · #{clip.id} · "
                f"<span id='proof-state'>{clip.review}</span> · {clip.duration_s:.2f} s · "
                f"flags: {flags}" + (f" · confidence {conf:.2f}" if conf is not None else ""))
        words = [(f"{i}: {w['word'].strip()}", i) for i, w in enumerate(clip.words) if i > 0]
        rows = clip_rows([review.get_clip(studio.store, i) for i in clip_ids])
        return (head, _audio_of(studio, clip), clip.text, gr.Dropdown(choices=words, value=None),
                0.0, round(clip.duration_s, 3), position, rows)

    shown = [info, audio, text, word, trim_start, trim_end, pos, table]

    @ui_errors
    def load(project, speaker_id, filter_, sort):
        if not project or speaker_id is None:
            return [], *view(project, [], 0)
        p = _project(studio, project)
        found = [c.id for c in review.list_clips(studio.store, p.id, int(speaker_id), filter_,
                                                 sort)]
        return found, *view(project, found, 0)

    @ui_errors
    def refresh_speakers(project, speaker_id):
        choices = speaker_choices(studio, project)
        values = [c[1] for c in choices]
        chosen = speaker_id if speaker_id in values else (values[0] if values else None)
        return gr.Dropdown(choices=choices, value=chosen)

    for trigger in (speaker.input, which.input, order.input):
        trigger(load, [current, speaker, which, order], [ids] + shown, api_visibility="private")

    def step(delta):
        @ui_errors
        def go(project, clip_ids, position):
            return view(project, clip_ids, int(position) + delta)
        return go

    def mark(state):
        @ui_errors
        def go(project, clip_ids, position):
            if clip_ids:
                review.set_review(studio.store, [clip_ids[int(position)]], state)
                gr.Info(f"Clip #{clip_ids[int(position)]} {state}.")
            last = int(position) + 1 >= len(clip_ids)
            return view(project, clip_ids, int(position) + (0 if last else 1))
        return go

    @ui_errors
    def save_text(project, clip_ids, position, value):
        if clip_ids:
            clip = review.get_clip(studio.store, clip_ids[int(position)])
            if " ".join(str(value or "").split()) != clip.text:
                review.set_text(studio.store, clip.id, value)
                gr.Info("Transcript saved.")
        return view(project, clip_ids, position)

    @ui_errors
    def undo(project, clip_ids, position):
        what = review.undo(studio.store, studio.ws, _project(studio, project).id)
        gr.Info(f"Undid: {what}." if what else "Nothing to undo.")
        return view(project, clip_ids, position)

    nav = [current, ids, pos]
    # One at a time, in order: each reads the position the previous one left (State is read
    # when the event runs, not when it is sent), and the keyboard queue waits for KEY_DONE_JS.
    serial = {"concurrency_id": PROOF_QUEUE, "concurrency_limit": 1}
    for btn, fn, api in ((prev_btn, step(-1), None), (next_btn, step(1), None),
                         (accept_btn, mark("accepted"), "accept_clip"),
                         (reject_btn, mark("rejected"), "reject_clip"),
                         (undo_btn, undo, "undo_clip_edit")):
        visibility = {"api_name": api} if api else {"api_visibility": "private"}
        btn.click(fn, nav, shown, **visibility, **serial, trigger_mode="multiple").then(
            None, None, None, js=KEY_DONE_JS, api_visibility="private")
    text.submit(save_text, nav + [text], shown, api_name="save_transcript", **serial)
    text.blur(save_text, nav + [text], shown, api_visibility="private", **serial)

    @ui_errors
    def trim(project, clip_ids, position, start, end):
        if clip_ids:
            review.trim_clip(studio.store, studio.ws, clip_ids[int(position)], start, end)
        return view(project, clip_ids, position)

    @ui_errors
    def split(project, clip_ids, position, index):
        if not clip_ids or index is None:
            raise BadInput("Choose the word to split before.")
        _, second = review.split_clip(studio.store, studio.ws, clip_ids[int(position)], int(index))
        clip_ids = list(clip_ids)
        clip_ids.insert(int(position) + 1, second.id)
        return clip_ids, *view(project, clip_ids, position)

    trim_btn.click(trim, nav + [trim_start, trim_end], shown, api_name="trim_clip", **serial)
    split_btn.click(split, nav + [word], [ids] + shown, api_name="split_clip", **serial)

    def bulk(action):
        @ui_errors
        def go(project, speaker_id, filter_, sort):
            if speaker_id is None:
                raise BadInput("Choose a speaker first.")
            p = _project(studio, project)
            count = action(studio.store, p.id, int(speaker_id))
            gr.Info(f"{count} clip(s) changed.")
            return load(project, speaker_id, filter_, sort)
        return go

    bulk_in = [current, speaker, which, order]
    reject_flagged_btn.click(bulk(review.reject_flagged), bulk_in, [ids] + shown,
                             api_name="reject_flagged")
    accept_all_btn.click(bulk(review.accept_all), bulk_in, [ids] + shown, api_name="accept_all")

    @ui_errors
    def open_row(project, clip_ids, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return view(project, clip_ids, row)

    table.select(open_row, [current, ids], shown, api_visibility="private", **serial)
    return refresh_speakers, speaker, load, [ids] + shown, bulk_in


# -------------------------------------------------------------------- recording

def _build_record(studio: Studio, current: gr.Dropdown):
    gr.Markdown("Record a voice prompt by prompt. Read the sentence, stop, listen, then save "
                "(or record again). Each take becomes a clip of the speaker with the prompt as "
                "its transcript, trimmed of silence and checked for level and clipping.")
    with gr.Row():
        who = gr.Textbox(label="Speaker (new or existing)", value="Me", elem_id="record-speaker")
        sets = gr.Dropdown(list(prompts.shipped_sets()) + [UPLOADED], value=SHIPPED_DEFAULT,
                           label="Prompt list", elem_id="record-set")
        upload = gr.File(label="Your prompts (.txt, one per line)", file_types=[".txt"],
                         type="filepath", elem_id="record-upload")
    with gr.Row():
        start_btn = gr.Button("Start or resume", variant="primary", elem_id="record-start")
        sessions = gr.Dropdown(label="Or resume a session", choices=[], elem_id="record-sessions")
    session_id, index = gr.State(None), gr.State(None)
    prompt = gr.Markdown(elem_id="record-prompt")
    progress = gr.Markdown(elem_id="record-progress")
    mic = gr.Audio(sources=["microphone"], type="filepath", label="Your take",
                   elem_id="record-mic")
    with gr.Row():
        back_btn = gr.Button("◀ Previous prompt", elem_id="record-back")
        save_btn = gr.Button("Save take", variant="primary", elem_id="record-save")
        skip_btn = gr.Button("Skip ▶", elem_id="record-skip")
    takes_table = gr.Dataframe(headers=TAKE_HEADERS, interactive=False, elem_id="record-takes",
                               label="Recorded takes")

    def session_choices(project):
        if not project:
            return []
        p = _project(studio, project)
        out = []
        for s in prompts.list_sessions(studio.store, p.id):
            prog = prompts.session_progress(studio.store, s.id)
            out.append((f"{s.name} · speaker #{s.speaker_id} ({prog.done}/{prog.total})", s.id))
        return out

    def show(project, sid, idx):
        if sid is None:
            return "", "", None, [], sid, idx
        session = prompts.get_session(studio.store, sid)
        prog = prompts.session_progress(studio.store, sid)
        done = prompts.takes(studio.store, sid)
        rows = [[i + 1, session.prompts[i], round(c.duration_s, 2), ", ".join(c.flags)]
                for i, c in sorted(done.items())]
        line = (f"**{prog.done} of {prog.total} prompts recorded** · "
                f"{prog.minutes:.1f} min")
        if idx is None:
            return "### Every prompt is recorded.", line, None, rows, sid, idx
        again = " (recorded — saving replaces it)" if idx in done else ""
        head = f"Prompt {idx + 1} of {prog.total}{again}\n\n### {session.prompts[idx]}"
        return head, line, None, rows, sid, idx

    shown = [prompt, progress, mic, takes_table, session_id, index]

    @ui_errors
    def start(project, speaker, set_name, file):
        p = _project(studio, project)
        if set_name == UPLOADED or file:
            if not file:
                raise BadInput("Upload a text file with one prompt per line.")
            lines, name = prompts.load_prompt_file(file), Path(file).stem
        else:
            lines, name = prompts.load_prompt_file(prompts.shipped_sets()[set_name]), set_name
        session = prompts.start_session(studio.store, p, speaker, lines, name)
        return (*show(project, session.id, prompts.next_prompt(studio.store, session.id)),
                gr.Dropdown(choices=session_choices(project), value=session.id))

    @ui_errors
    def resume(project, sid):
        if sid is None:
            return show(project, None, None)
        return show(project, sid, prompts.next_prompt(studio.store, sid))

    @ui_errors
    def save(project, sid, idx, recording):
        if sid is None or idx is None:
            raise BadInput("Start a session first.")
        if not recording:
            raise BadInput("Record the prompt first (press the microphone's record button).")
        result = prompts.save_take(studio.store, studio.ws, _project(studio, project), sid,
                                   idx, recording)
        for warning in result.warnings:
            gr.Warning(warning)
        gr.Info(f"Saved as clip #{result.clip.id} ({result.clip.duration_s:.1f} s).")
        return show(project, sid, prompts.next_prompt(studio.store, sid, idx))

    @ui_errors
    def move(project, sid, idx, delta):
        if sid is None:
            return show(project, None, None)
        total = len(prompts.get_session(studio.store, sid).prompts)
        return show(project, sid, ((idx or 0) + delta) % total)

    start_btn.click(start, [current, who, sets, upload], shown + [sessions],
                    api_name="start_recording")
    sessions.input(resume, [current, sessions], shown, api_visibility="private")
    save_btn.click(save, [current, session_id, index, mic], shown, api_name="save_take")
    back_btn.click(lambda p, s, i: move(p, s, i, -1), [current, session_id, index], shown,
                   api_visibility="private")
    skip_btn.click(lambda p, s, i: move(p, s, i, 1), [current, session_id, index], shown,
                   api_visibility="private")

    @ui_errors
    def refresh(project):
        return gr.Dropdown(choices=session_choices(project), value=None)

    return refresh, sessions


# ----------------------------------------------------------------------- export

def _build_export(studio: Studio, current: gr.Dropdown):
    gr.Markdown("Export accepted clips for other tools (training in this studio reads the "
                "speakers straight from the project).\n\n"
                + "\n".join(f"- {v}" for v in FORMAT_HELP.values()))
    with gr.Row():
        who = gr.Dropdown(label="Speakers", choices=[], multiselect=True, elem_id="export-speakers",
                          scale=3)
        fmt = gr.Radio(list(export.FORMATS), value="ljspeech", label="Format",
                       elem_id="export-format", scale=2)
    run_btn = gr.Button("Export", variant="primary", elem_id="export-run")
    summary = gr.Markdown(elem_id="export-summary")
    download = gr.File(label="Download (zip)", interactive=False, elem_id="export-zip")

    @ui_errors
    def run(project, speaker_ids, format_):
        p = _project(studio, project)
        result = export.export_speakers(studio.store, studio.ws, p,
                                        [int(s) for s in speaker_ids or []], format_)
        text = (f"**Exported {', '.join(result.speakers)}:** {result.summary()}  \n"
                f"Folder: `{result.folder}`")
        return text, result.zip_path

    run_btn.click(run, [current, who, fmt], [summary, download], api_name="export_dataset")

    @ui_errors
    def refresh(project):
        choices = speaker_choices(studio, project, unassigned=False)
        return gr.Dropdown(choices=choices, value=[])

    return refresh, who


# ------------------------------------------------------------------------ build

def build(studio: Studio, current: gr.Dropdown) -> None:
    """Render the tab."""
    outer = Context.block  # the Review tab itself, when built inside one
    with gr.Tabs():
        with gr.Tab("Clusters", id="review-clusters") as clusters_tab:
            refresh_clusters, cluster_outs = _build_clusters(studio, current)
        with gr.Tab("Proofread", id="review-proofread") as proof_tab:
            refresh_proof, proof_speaker, load, load_outs, load_in = _build_proofread(studio,
                                                                                      current)
        with gr.Tab("Record", id="review-record") as record_tab:
            refresh_record, sessions = _build_record(studio, current)
        with gr.Tab("Export", id="review-export") as export_tab:
            refresh_export, export_who = _build_export(studio, current)
    for tab in (clusters_tab, outer) if isinstance(outer, gr.Tab) else (clusters_tab,):
        tab.select(refresh_clusters, [current], cluster_outs, api_visibility="private")
    proof_tab.select(refresh_proof, [current, proof_speaker], [proof_speaker],
                     api_visibility="private").then(load, load_in, load_outs,
                                                    api_visibility="private")
    record_tab.select(refresh_record, [current], [sessions], api_visibility="private")
    export_tab.select(refresh_export, [current], [export_who], api_visibility="private")
    current.change(refresh_export, [current], [export_who], api_visibility="private")
    root = Context.root_block
    if root is not None:
        root.load(None, None, None, js=KEYS_JS, api_visibility="private")
