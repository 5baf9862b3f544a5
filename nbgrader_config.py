"""nbgrader configuration for the Semantic Segmentation Labs.

solutions/<lab>/<lab>.ipynb is the source of truth; `make labs` (nbgrader generate_assignment)
writes the student version to labs/<lab>/<lab>.ipynb. Everything nbgrader writes while grading
(gradebook, submitted/, autograded/, feedback/, the exchange) goes under grading/, which git ignores.

Environment overrides (so one file serves a laptop, CI and a GPU grading machine):
  SEGLAB_GRADING_DIR   where grading/ lives (default: next to this file)
  SEGLAB_CELL_TIMEOUT  seconds one cell may run while autograding (default 120; raise it for lab 04
                       with its full training budget, e.g. SEGLAB_CELL_TIMEOUT=900)
"""

from pathlib import Path

from helpers.config import setting

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

HERE = Path(__file__).resolve().parent
GRADING = Path(setting("SEGLAB_GRADING_DIR") or HERE / "grading").resolve()
GRADING.mkdir(parents=True, exist_ok=True)  # sqlite cannot create the gradebook's folder itself

c.CourseDirectory.root = str(HERE)
c.CourseDirectory.course_id = "seglabs"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = str(GRADING / "submitted")
c.CourseDirectory.autograded_directory = str(GRADING / "autograded")
c.CourseDirectory.feedback_directory = str(GRADING / "feedback")
c.CourseDirectory.db_url = f"sqlite:///{GRADING / 'gradebook.db'}"
# Only the notebook itself is released; data are generated on first use by helpers.data.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.pt", "*.json"]

c.Exchange.root = str(GRADING / "exchange")

# Per-cell limit while autograding. Both names are set: which one nbgrader honours has varied by version.
_timeout = setting("SEGLAB_CELL_TIMEOUT", int)
c.Execute.timeout = _timeout
c.ExecutePreprocessor.timeout = _timeout
c.Execute.interrupt_on_timeout = True
# Tracebacks without source lines while grading: IPython would otherwise quote the hidden-test code around a
# failing line in the feedback. Hidden tests report what went wrong through their messages (helpers.checks.run_cases).
c.Execute.extra_arguments = ["--InteractiveShell.xmode=Minimal"]

# Hidden tests whose first line is `# harness` run in the grader's process, never in the student's kernel
# (seglabs_grading/harness): HarnessExecute runs each test cell's visible part in the kernel and its hidden part
# in the harness; HarnessVerdicts then writes each such test cell's outputs from the harness's verdict alone
# (per-case credit), whatever the kernel printed there. nbgrader's own steps otherwise, in nbgrader's order.
c.Autograde.autograde_preprocessors = [
    "seglabs_grading.harness.preprocessors.HarnessExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "seglabs_grading.harness.preprocessors.HarnessVerdicts",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# The formgrader and the feedback pages show students' outputs and markdown on the Jupyter server's origin:
# sanitise them (nbconvert's own option; the formgrader builds its exporter from this config), so a submission's
# <script> or event handler never runs in the instructor's browser. `course grade` also drops metadata.widgets.
# The option cleans outputs; nbgrader's formgrade template renders markdown cells itself, so nbconvert's own
# SanitizeHTML preprocessor also cleans every cell (markdown source, HTML outputs) before any template sees it.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.preprocessors = ["nbconvert.preprocessors.sanitize.SanitizeHTML"]

# Hidden tests never reach students: strip their source from generated feedback (nbgrader shows it by default).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# Where students install the course package from: the setup cell of every released lab pip-installs it on Colab
# (and where a student opts in). A git URL, a wheel's URL, or pip index options, e.g.
#   c.StampInstallSource.source = "git+https://github.com/<you>/<your-course>@2026"
# then `make labs` (or `course release`) writes it into labs/. Empty: the setup cell tells students to ask you.
# See seglabs_grading/install_source.py.
c.StampInstallSource.source = ""
# nbgrader's own steps, after writing the install source into the setup cell (before its checksum is taken).
c.GenerateAssignment.preprocessors = [
    "seglabs_grading.install_source.StampInstallSource",
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Student versions: solution regions become a NotImplementedError stub; outputs are never shipped.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearOutput.enabled = True
