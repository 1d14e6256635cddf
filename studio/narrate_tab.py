"""Narrate tab: import a book, fix its chapters and pronunciations, hear it, narrate, download.

Handlers only read inputs, call projects.books / projects.narrate and format
what comes back. The narration itself is a background job (the jobs panel shows
its progress); this tab shows its results once it is done.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr
from gradio.context import Context

from projects import books, narrate, voices
from projects.errors import BadInput
from projects.projects import get_project
from studio.common import Studio, esc, keeping, ui_errors

log = logging.getLogger("voice_studio.ui.narrate")
REFRESH_S = 3.0
CHAPTER_HEADERS = ["#", "Title", "Narrate", "Words", "Voice", "Narrated"]
REPORT_HEADERS = ["#", "Chapter", "Length", "RMS dB", "True peak dBTP", "Noise floor dB",
                  "Head s", "Tail s", "ACX norms"]
FLAGGED_HEADERS = ["Sentence id", "Chapter", "Text", "Whisper heard", "WER"]
BOOK_TYPES = [".epub", ".txt", ".md", ".markdown", ".pdf", ".docx"]


# --------------------------------------------------------------------------- views

def _need_project(project: str | None):
    if not project:
        raise BadInput("Create or open a project first (Projects tab).")
    return project


def _need_book(book_id) -> int:
    if not book_id:
        raise BadInput("Import or pick a book first.")
    return int(book_id)


def book_choices(studio: Studio, project: str | None) -> list[tuple[str, int]]:
    """(title, id) of the project's books, newest first."""
    if not project:
        return []
    p = get_project(studio.store, project)
    return [(f"{b.title} (#{b.id})", b.id) for b in books.list_books(studio.store, p.id)]


def voice_choices(studio: Studio) -> list[tuple[str, str]]:
    """(label, key) of every TTS voice."""
    return [(v.label, v.key) for v in voices.list_tts_voices(studio.store, studio.ws, studio.registry)]


def chapter_voice_choices(studio: Studio) -> list[tuple[str, str]]:
    """A chapter's voice: the book's own (empty key), or any TTS voice."""
    return [("The book's voice", "")] + voice_choices(studio)


def chapter_rows(studio: Studio, book_id) -> list[list]:
    """The chapters table."""
    if not book_id:
        return []
    return [[n, c.title, "yes" if c.included else "no", c.word_count(), c.voice or "book's voice",
             "yes" if c.audio_path else ""]
            for n, c in enumerate(books.list_chapters(studio.store, int(book_id)), start=1)]


def book_info(studio: Studio, book_id) -> str:
    """One line about the book."""
    if not book_id:
        return "No book yet: import one above."
    b = books.get_book(studio.store, int(book_id))
    chapters = books.list_chapters(studio.store, b.id)
    words = sum(c.word_count() for c in chapters if c.included)
    return (f"**{esc(b.title)}**" + (f" by {esc(b.author)}" if b.author else "")
            + f" · {b.source_format} · language {esc(b.language or 'not stated')} · "
            f"{len(chapters)} chapters · {words:,} words to narrate")


def lexicon_rows(studio: Studio, project: str | None) -> list[list]:
    """The lexicon table."""
    if not project:
        return []
    p = get_project(studio.store, project)
    return [[w, r] for w, r in books.lexicon_entries(studio.store, p.id).items()]


def results(studio: Studio, book_id):
    """(report rows, playable chapter choices, download paths, flagged rows)."""
    if not book_id:
        return [], gr.Dropdown(choices=[], value=None), None, []
    book_id = int(book_id)
    chapters = [c for c in books.list_chapters(studio.store, book_id) if c.audio_path and c.included]
    playable = [(f"{n}. {c.title}", c.id) for n, c in enumerate(chapters, start=1)]
    last = narrate.latest_result(studio.store, book_id)
    stored = list(last.get("files") or []) + ([last["m4b"]] if last.get("m4b") else [])
    files = [str(studio.ws.resolve(p)) for p in stored if studio.ws.resolve(p).is_file()]
    flagged = [[f["id"], f["chapter"], f["text"], f["heard"] or "", round(f["wer"] or 0, 2)]
               for f in narrate.flagged_sentences(studio.store, book_id)]
    return (narrate.report_rows(studio.store, book_id), gr.Dropdown(choices=playable, value=None),
            files or None, flagged)


def _settings(voice, speed, variation, rhythm, sentence_pause, paragraph_pause, chapter_pause,
              back_check, chapter_format, make_m4b) -> narrate.NarrationSettings:
    return narrate.NarrationSettings(
        voice=voice or "", length_scale=float(speed), noise_scale=float(variation),
        noise_w=float(rhythm), sentence_pause_s=float(sentence_pause),
        paragraph_pause_s=float(paragraph_pause), chapter_pause_s=float(chapter_pause),
        back_check=bool(back_check), chapter_format=chapter_format, make_m4b=bool(make_m4b))


def _chapter(studio: Studio, book_id, number) -> books.ChapterRecord:
    return books.chapter_at(studio.store, _need_book(book_id), int(number or 1))


# --------------------------------------------------------------------------- layout

class NarrateTab:
    """The tab's components, laid out section by section, then wired together."""

    def __init__(self, studio: Studio, current: gr.Dropdown):
        self.studio, self.store, self.current = studio, studio.store, current

    # ---------------------------------------------------------------- layout

    def layout(self) -> None:
        """Create every component, top to bottom."""
        gr.Markdown("### Narrate a book\nImport an epub, txt, md, pdf (with a text layer) or "
                    "docx. Chapters, their text and your edits are saved in the project as you go.")
        gr.Markdown(f"> **Before you publish:** {narrate.RETAILER_NOTICE}", elem_id="retailer-notice")
        with gr.Row():
            self.upload = gr.File(label="Book file", file_types=BOOK_TYPES, type="filepath",
                                  elem_id="book-upload")
            with gr.Column():
                self.read_code = gr.Checkbox(label="Read code blocks aloud", value=False)
                self.import_btn = gr.Button("Import book", variant="primary", elem_id="import-book")
                self.book = gr.Dropdown(label="Book", choices=[], elem_id="book-pick")
        self.info = gr.Markdown(elem_id="book-info")
        self._chapters()
        self._preview()
        self._lexicon()
        self._voice()
        self._results()

    def _chapters(self) -> None:
        gr.Markdown("#### Chapters\nPick a chapter by its number; every change is saved at once.")
        self.table = gr.Dataframe(headers=CHAPTER_HEADERS, interactive=False, elem_id="chapters-table")
        with gr.Row():
            self.chapter_no = gr.Number(label="Chapter #", value=1, precision=0, minimum=1,
                                        elem_id="chapter-no")
            self.title = gr.Textbox(label="Title", elem_id="chapter-title", scale=3)
            self.rename_btn = gr.Button("Rename", elem_id="chapter-rename")
            self.include_btn = gr.Button("Include / exclude", elem_id="chapter-include")
        with gr.Row():
            self.merge_btn = gr.Button("Merge with next", elem_id="chapter-merge")
            self.split_at = gr.Number(label="Split at paragraph #", value=2, precision=0, minimum=2)
            self.split_btn = gr.Button("Split", elem_id="chapter-split")
            self.move_to = gr.Number(label="Move to position", value=1, precision=0, minimum=1)
            self.move_btn = gr.Button("Move", elem_id="chapter-move")
            self.chapter_voice = gr.Dropdown(
                label="Voice for this chapter", value="", elem_id="chapter-voice",
                choices=chapter_voice_choices(self.studio))
        self.text = gr.Textbox(label="Chapter text (paragraphs separated by a blank line)", lines=8,
                               max_lines=20, elem_id="chapter-text")
        self.save_text = gr.Button("Save chapter text", elem_id="save-chapter-text")

    def _preview(self) -> None:
        gr.Markdown("#### Hear it first\nPick a paragraph of the chapter above: see how its words "
                    "will be read, or listen to it with the voice settings below.")
        with gr.Row():
            self.paragraph_no = gr.Number(label="Paragraph #", value=1, precision=0, minimum=1,
                                          elem_id="paragraph-no")
            self.read_btn = gr.Button("How will this be read?", elem_id="read-preview")
            self.listen_btn = gr.Button("Listen", variant="primary", elem_id="preview-paragraph")
        self.paragraph = gr.Textbox(label="Paragraph", lines=3, elem_id="paragraph-text")
        self.reading = gr.Markdown(elem_id="read-output")
        self.preview_audio = gr.Audio(label="Preview", type="filepath", interactive=False,
                                      elem_id="preview-audio")

    def _lexicon(self) -> None:
        gr.Markdown("#### Pronunciation lexicon (this project)\nA word and what to say instead: "
                    "plain words, or phonemes written as `[[ phonemes ]]`.")
        self.lexicon = gr.Dataframe(headers=["Word", "Say instead"], interactive=False,
                                    elem_id="lexicon-table")
        with gr.Row():
            self.lex_word = gr.Textbox(label="Word", elem_id="lex-word")
            self.lex_say = gr.Textbox(label="Say instead", elem_id="lex-say")
            self.lex_add = gr.Button("Add / change", elem_id="lex-add")
            self.lex_remove = gr.Button("Remove", elem_id="lex-remove")

    def _voice(self) -> None:
        gr.Markdown("#### Voice and narration")
        d = narrate.NarrationSettings()
        with gr.Row():
            voice = gr.Dropdown(label="Voice", choices=voice_choices(self.studio), value=d.voice,
                                elem_id="voice-pick")
            speed = gr.Slider(0.5, 2.0, d.length_scale, step=0.05, label="Slowness (length scale)")
            variation = gr.Slider(0.0, 1.5, d.noise_scale, step=0.05, label="Variation (noise)")
            rhythm = gr.Slider(0.0, 1.5, d.noise_w, step=0.05, label="Rhythm variation")
        with gr.Row():
            sentence = gr.Slider(0.0, 2.0, d.sentence_pause_s, step=0.05, label="Pause after sentences (s)")
            paragraph = gr.Slider(0.0, 3.0, d.paragraph_pause_s, step=0.05, label="Pause after paragraphs (s)")
            chapter = gr.Slider(2.0, 5.5, d.chapter_pause_s, step=0.25, label="Pause between chapters (s)")
        with gr.Row():
            check = gr.Checkbox(label="Back-check every sentence with Whisper (slower)",
                                value=d.back_check, elem_id="back-check")
            fmt = gr.Radio(["mp3", "wav", "flac", "none"], value=d.chapter_format,
                           label="Chapter files", elem_id="chapter-format")
            m4b = gr.Checkbox(label="M4B audiobook with chapter marks", value=d.make_m4b)
            self.narrate_btn = gr.Button("Narrate book", variant="primary", elem_id="narrate-book")
        self.voice_inputs = [voice, speed, variation, rhythm, sentence, paragraph, chapter, check,
                             fmt, m4b]

    def _results(self) -> None:
        gr.Markdown("#### Results\nLevels of each chapter against the ACX norms (✔ meets them, "
                    "✘ names the norm missed), the chapters to play, and the files to download. "
                    f"{narrate.RETAILER_NOTICE}")
        self.reports = gr.Dataframe(headers=REPORT_HEADERS, interactive=False, elem_id="chapter-reports")
        with gr.Row():
            self.play_pick = gr.Dropdown(label="Play chapter", choices=[], elem_id="play-chapter")
            self.chapter_audio = gr.Audio(label="Chapter", type="filepath", interactive=False,
                                          elem_id="chapter-audio")
        self.files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                             elem_id="narration-files")
        gr.Markdown("**Flagged sentences**: Whisper did not hear what the text says. Listen, then "
                    "accept it or fix the text (only that sentence is narrated again).")
        self.flagged = gr.Dataframe(headers=FLAGGED_HEADERS, interactive=False, elem_id="flagged-table")
        with gr.Row():
            self.sentence_id = gr.Number(label="Sentence id", precision=0, elem_id="flagged-id")
            self.sentence_text = gr.Textbox(label="Corrected text", elem_id="flagged-text", scale=3)
            self.sentence_audio = gr.Audio(label="Sentence", type="filepath", interactive=False)
        with gr.Row():
            self.accept_btn = gr.Button("Accept as it is", elem_id="flagged-accept")
            self.fix_btn = gr.Button("Save corrected text", elem_id="flagged-fix")
        self.seen = gr.State(None)
        self.timer = gr.Timer(REFRESH_S)

    @property
    def result_outputs(self) -> list:
        return [self.reports, self.play_pick, self.files, self.flagged]

    # ---------------------------------------------------------------- events

    def wire(self) -> None:
        """Connect the events once every component exists."""
        self._wire_book()
        self._wire_chapters()
        self._wire_preview()
        self._wire_lexicon()
        self._wire_results()

    def _wire_book(self) -> None:
        studio = self.studio

        @ui_errors
        def do_import(project, path, code):
            _need_project(project)
            if not path:
                raise BadInput("Choose a book file to import.")
            from engines.books import CleanupConfig

            b = books.import_book(studio.store, studio.ws, project, Path(path),
                                  CleanupConfig(code_blocks="read" if code else "skip"))
            gr.Info(f"Imported '{b.title}' with {len(books.list_chapters(self.store, b.id))} chapters.")
            return gr.Dropdown(choices=book_choices(studio, project), value=b.id), None

        self.import_btn.click(do_import, [self.current, self.upload, self.read_code],
                              [self.book, self.upload], api_name="import_book")

        def on_project(project):
            choices = book_choices(studio, project)
            return (gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
                    lexicon_rows(studio, project))

        self.current.change(ui_errors(on_project), [self.current], [self.book, self.lexicon],
                            api_visibility="private")
        show = ui_errors(lambda b: (book_info(studio, b), chapter_rows(studio, b), *results(studio, b)))
        self.book.change(show, [self.book], [self.info, self.table, *self.result_outputs],
                         api_visibility="private")

        @ui_errors
        def start(book_id, *values):
            job = narrate.start_narration(studio.store, studio.ws, _need_book(book_id),
                                          _settings(*values))
            gr.Info(f"Narration queued as job #{job.id}; follow it in the jobs panel.")

        self.narrate_btn.click(start, [self.book, *self.voice_inputs], None, api_name="narrate_book")

    def _wire_chapters(self) -> None:
        studio, s = self.studio, self.store

        def load(book_id, n):
            if not book_id:
                return "", "", ""
            c = _chapter(studio, book_id, n)
            return c.title, c.text, c.voice or ""

        def edit(action):
            @ui_errors
            def handler(book_id, n, *args):
                action(_chapter(studio, book_id, n), *args)
                return (chapter_rows(studio, book_id), *load(book_id, n))
            return handler

        fields = [self.title, self.text, self.chapter_voice]
        for trigger in (self.chapter_no.change, self.book.change):
            trigger(ui_errors(load), [self.book, self.chapter_no], fields, api_visibility="private")
        out = [self.table, *fields]
        b, n = self.book, self.chapter_no
        self.rename_btn.click(edit(lambda c, t: books.rename_chapter(s, c.id, t)), [b, n, self.title],
                              out, api_name="rename_chapter")
        self.include_btn.click(edit(lambda c: books.set_chapter_included(s, c.id, not c.included)),
                               [b, n], out, api_name="toggle_chapter")
        self.merge_btn.click(edit(lambda c: books.merge_with_next(s, c.id)), [b, n], out,
                             api_name="merge_chapter")
        self.split_btn.click(edit(lambda c, p: books.split_chapter_at(s, c.id, int(p))),
                             [b, n, self.split_at], out, api_name="split_chapter")
        self.move_btn.click(edit(lambda c, to: books.move_chapter_to(s, c.id, int(to))),
                            [b, n, self.move_to], out, api_name="move_chapter")
        self.chapter_voice.input(edit(lambda c, v: books.set_chapter_voice(s, c.id, v or None)),
                                 [b, n, self.chapter_voice], out, api_visibility="private")
        self.save_text.click(edit(lambda c, t: books.set_chapter_text(s, c.id, t)), [b, n, self.text],
                             out, api_name="save_chapter_text")

    def _wire_preview(self) -> None:
        studio = self.studio

        @ui_errors
        def pick(book_id, chapter_n, n):
            if not book_id:
                return ""
            paragraphs = _chapter(studio, book_id, chapter_n).paragraphs()
            return paragraphs[min(max(int(n or 1), 1), len(paragraphs)) - 1]

        args = [self.book, self.chapter_no, self.paragraph_no]
        for trigger in (self.paragraph_no.change, self.chapter_no.change, self.book.change,
                        self.table.change):
            trigger(pick, args, [self.paragraph], api_visibility="private")

        def as_markdown(pairs):
            return "\n".join(f"- {esc(spoken)}" for _, spoken in pairs) or "_Nothing to say._"

        @ui_errors
        def read(project, text, voice):
            p = get_project(studio.store, _need_project(project))
            return as_markdown(narrate.reading_preview(studio.store, studio.ws, p.id, text, voice))

        @ui_errors
        def listen(book_id, text, *values):
            wav, pairs = narrate.preview_paragraph(studio.store, studio.ws, _need_book(book_id),
                                                   text, _settings(*values))
            return str(wav), as_markdown(pairs)

        self.read_btn.click(read, [self.current, self.paragraph, self.voice_inputs[0]],
                            [self.reading], api_name="reading_preview")
        self.listen_btn.click(listen, [self.book, self.paragraph, *self.voice_inputs],
                              [self.preview_audio, self.reading], api_name="preview_paragraph")

    def _wire_lexicon(self) -> None:
        studio = self.studio

        def change(action):
            @ui_errors
            def handler(project, word, say):
                p = get_project(studio.store, _need_project(project))
                action(p.id, word, say)
                return lexicon_rows(studio, project), "", ""
            return handler

        io = ([self.current, self.lex_word, self.lex_say], [self.lexicon, self.lex_word, self.lex_say])
        self.lex_add.click(change(lambda p, w, r: books.set_lexicon_entry(self.store, p, w, r)), *io,
                           api_name="set_lexicon_entry")
        self.lex_remove.click(change(lambda p, w, r: books.remove_lexicon_entry(self.store, p, w)), *io,
                              api_name="remove_lexicon_entry")

    def _wire_results(self) -> None:
        studio = self.studio

        @ui_errors
        def play(chapter_id):
            if not chapter_id:
                return None
            c = books.get_chapter(studio.store, int(chapter_id))
            return str(studio.ws.resolve(c.audio_path)) if c.audio_path else None

        self.play_pick.change(play, [self.play_pick], [self.chapter_audio], api_name="play_chapter")

        def refresh(book_id, seen):
            """Results again only when a narration of this book finished since last time."""
            if not book_id:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
            row = studio.store.one("SELECT MAX(id) AS id FROM jobs WHERE kind = ? AND status = 'done' "
                                   "AND json_extract(params, '$.book_id') = ?",
                                   [narrate.KIND, int(book_id)])
            mark = (int(book_id), row["id"] if row else None)
            if mark == seen:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
            return (*results(studio, book_id), mark)

        self.timer.tick(ui_errors(refresh), [self.book, self.seen], [*self.result_outputs, self.seen],
                        api_visibility="private", show_progress="hidden")

        @ui_errors
        def pick_sentence(sentence_id):
            if not sentence_id:
                return None, ""
            row = studio.store.one("SELECT text FROM sentences WHERE id = ?", [int(sentence_id)])
            return str(narrate.sentence_audio(studio.store, studio.ws, int(sentence_id))), \
                (row or {}).get("text", "")

        self.sentence_id.change(pick_sentence, [self.sentence_id],
                                [self.sentence_audio, self.sentence_text], api_visibility="private")

        @ui_errors
        def accept(book_id, sentence_id):
            narrate.accept_sentence(studio.store, studio.ws, int(sentence_id or 0))
            return results(studio, book_id)[3]

        @ui_errors
        def fix(book_id, sentence_id, text):
            books.edit_sentence(studio.store, int(sentence_id or 0), text)
            gr.Info("Saved. Narrate the book again: only this sentence is synthesized anew.")
            return chapter_rows(studio, book_id)

        self.accept_btn.click(accept, [self.book, self.sentence_id], [self.flagged],
                              api_name="accept_sentence")
        self.fix_btn.click(fix, [self.book, self.sentence_id, self.sentence_text], [self.table],
                           api_name="fix_sentence")


def _warm_up(studio: Studio) -> None:
    """Load the bundled voice in the background so the first preview takes seconds, not ten."""
    def load() -> None:
        try:
            voices.load_synthesizer(voices.bundled_voice(studio.registry))
        except Exception:  # a missing voice is reported when the user asks for it
            log.info("bundled voice not preloaded", exc_info=True)

    # Not a daemon: onnxruntime aborts the whole process ("terminate called without an
    # active exception") if the interpreter exits while a session is being created.
    threading.Thread(target=load, name="voice-warm-up").start()


def build(studio: Studio, current: gr.Dropdown) -> None:
    """Render the tab; selecting it lists voices promoted or imported since the page loaded."""
    outer = Context.block  # the Narrate tab itself, when built inside one
    tab = NarrateTab(studio, current)
    tab.layout()
    tab.wire()
    if isinstance(outer, gr.Tab):
        def refresh_voices(voice, chapter_voice):
            return (keeping(voice_choices(studio), voice, narrate.NarrationSettings().voice),
                    keeping(chapter_voice_choices(studio), chapter_voice, ""))

        pickers = [tab.voice_inputs[0], tab.chapter_voice]
        outer.select(ui_errors(refresh_voices), pickers, pickers, api_visibility="private")
    _warm_up(studio)
