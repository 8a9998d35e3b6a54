# nbgrader configuration of the cnnbook course. Run every nbgrader command from the repository
# root, the folder that holds this file: solutions/README.md is the instructor's guide.
#
#   solutions/<id>/<id>.ipynb    the sources (solutions, hidden tests)   nbgrader's "source" step
#   exercises/<id>/<id>.ipynb    the student versions, committed         nbgrader's "release" step
#   submitted/, autograded/, feedback/, gradebook.db                      a grading run's output,
#                                                                         ignored by git
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "cnnbook"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# A cell may run for 30 minutes: `nbgrader validate` of the resnet notebook trains the network when
# no saved model sits beside it (a few minutes on a CPU with the shared subset, the budget the
# notebook documents on a GPU). Autograding never trains (the notebook loads the submitted model),
# so this limit only bites on a runaway student cell.
c.Execute.timeout = 1800

# Autograding assumes hostile submissions (solutions/README.md, "How grading works" and "Threat
# model"). nbgrader's own steps stay; cnnbook.grading.nbgrader_steps adds or replaces these
# (nbgrader validate
# is not affected):
#   ForgetUnknownCells    a cell with a grade id the gradebook does not know (a renamed test) is
#                         the student's own; the real test cell is put back (add_missing_cells)
#   CheckSubmittedFiles   the grading copy keeps no symlink, special file, file over
#                         max_file_bytes, or file named like an installed module
#                         (cnnbook/, numpy.py)
#   CheckAnswerSource     (assignments not yet judged outside the kernel) the student's cells are
#                         analysed outside the kernel (cnnbook.grading.source_rules); a cell that
# imports
#                         cnnbook, uses eval/exec/__import__/importlib, patches a module or
#                         IPython, is replaced by one that raises the reason
#   SandboxedExecute      each kernel runs under bubblewrap (cnnbook.grading.sandbox) in a
# throwaway copy
#                         of the submission (never in autograded/), read-only Python, a private
#                         /tmp; no course folder, gradebook, other student or network. For a
#                         judged assignment it runs the test cells without their hidden tests:
#                         its outcome is the student's feedback, not the grade
#   JudgeOutsideKernel    the grade of each test cell of c.JudgeOutsideKernel.assignments: the
#                         instructor's test cells (hidden tests included) run in a judge process
#                         that no student code ever ran in; the student's functions run in other
#                         sandboxed processes (cnnbook's reference code and, where a test forbids
#                         them, Keras and TensorFlow are not there to import) and answer with
#                         plain data (cnnbook.grading)
#   SaveAutoGradesOrDefer a cell that timed out, or whose kernel was killed or died, is left for
#                         manual grading with the reason (never a 0); the command ends with a
#                         list of those cells (`python -m cnnbook.grading deferred <id>` lists
#                         them from the gradebook, exit status 2 while any waits)
#   AssignLatePenaltiesByArrival  nbgrader's late penalty, counted from when the exchange
#                         received the submission (cnnbook's collect observed it:
#                         cnnbook.grading.collect), not from the student's timestamp.txt
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
)

c.Autograde.sanitize_preprocessors = [
    ClearOutput, DeduplicateIds, OverwriteKernelspec,
    "cnnbook.grading.nbgrader_steps.ForgetUnknownCells",
    OverwriteCells, CheckCellMetadata, "cnnbook.grading.nbgrader_steps.CheckSubmittedFiles",
]
c.Autograde.autograde_preprocessors = [
    "cnnbook.grading.nbgrader_steps.CheckAnswerSource",
    "cnnbook.grading.nbgrader_steps.SandboxedExecute",
    "cnnbook.grading.nbgrader_steps.JudgeOutsideKernel", IgnorePattern,
    ClearMetadataPreprocessor, LimitOutput, "cnnbook.grading.nbgrader_steps.SaveAutoGradesOrDefer",
    "cnnbook.grading.late_policy.AssignLatePenaltiesByArrival", CheckCellMetadata,
]
# Late work (cnnbook.grading.late_policy): 10% of the score off per started day after the due date
# and the student's extension, at most 50%, after 15 minutes of grace. Due dates live in the
# gradebook: `nbgrader db assignment add sizing --duedate="2027-01-15 23:59:00+01:00"`;
# extensions: `python -m cnnbook.grading extend sizing student1 --days 2`. An assignment without a
# due date is never late. A submission's time is when the exchange received it, observed by
# cnnbook's collect (cnnbook.grading.collect: it also copies no link, pipe or device), not the
# timestamp.txt that a student can edit. On a hub whose exchange is ngshare
# (CNNBOOK_EXCHANGE_KIND=ngshare, deploy/README.md "Several courses on one hub") every exchange
# step is ngshare's, whichever folder a command runs in; ngshare records each submission's arrival
# on the server, and cnnbook's subclass of its collect writes each student's files safely
# (cnnbook.grading.ngshare_collect).
if os.environ.get("CNNBOOK_EXCHANGE_KIND") == "ngshare":
    # ngshare_exchange reads the user's name when imported; a failure here must stop the command
    # (traitlets would drop this whole file, the grading sandbox with it, on an Exception)
    os.environ.setdefault("USER", os.environ.get("JUPYTERHUB_USER") or str(os.getuid()))
    try:
        from ngshare_exchange import configureExchange
    except ImportError as error:
        raise SystemExit(f"CNNBOOK_EXCHANGE_KIND=ngshare, but ngshare_exchange cannot be "
                         f"imported ({error}): pip install --no-deps -r requirements-no-deps.txt"
                         ) from None
    configureExchange(c, os.environ.get("CNNBOOK_NGSHARE_URL") or None)
    c.ExchangeFactory.collect = "cnnbook.grading.ngshare_collect.NgshareCollect"
else:
    c.ExchangeFactory.collect = "cnnbook.grading.collect.CollectWithObservedTime"
c.AssignLatePenaltiesByArrival.plugin_class = "cnnbook.grading.late_policy.SharePerDayLate"
c.SharePerDayLate.share_per_day = 0.1
c.SharePerDayLate.cap = 0.5
c.SharePerDayLate.grace_minutes = 15
# a test cell a student deleted or renamed comes back from the gradebook (and is graded)
c.OverwriteCells.add_missing_cells = True
# The assignments whose grades the judge decides outside the student's kernel: all four (a block
# function gets the judge's Keras input tensors as tensors made in the student's process, and its
# layers come back as a config that the judge joins to its own tensors; the submitted networks
# are loaded by the judge). An assignment taken out of this list takes the kernel's outcome,
# with CheckAnswerSource.
c.JudgeOutsideKernel.assignments = ["sizing", "parameters", "architectures", "resnet"]
c.JudgeOutsideKernel.call_timeout = 60       # seconds for one call of a student's function
c.JudgeOutsideKernel.notebook_timeout = 1200  # seconds for judging one notebook
# The student's notebook also runs in a sandboxed kernel, for the feedback only (their own outputs
# and figures beside the verdicts); False takes about a third less CPU and leaves the grades as
# they are, with the verdicts alone in the feedback.
c.JudgeOutsideKernel.feedback_kernel = True
# The limits of autograding, in one place. Seconds per cell (validate keeps c.Execute.timeout):
c.SandboxedExecute.timeout = 120
c.SandboxedExecute.notebook_timeout = 1800  # seconds for all the cells of one notebook
c.GradingSandbox.enabled = True          # False: no bubblewrap (student code runs as you!)
c.GradingSandbox.memory_limit_mib = 4096  # resident memory of one kernel and its children
c.GradingSandbox.max_processes = 64       # processes of one kernel (a fork bomb is killed)
c.GradingSandbox.max_output_bytes = 2_000_000  # output kept per notebook
c.GradingSandbox.max_file_bytes = 100 * 2**20  # largest submitted file given to the kernel
# c.GradingSandbox.readonly_paths = [...]  # what kernels may read; default: $CNNBOOK_DATA

# Feedback never shows hidden tests: `nbgrader generate_feedback` strips them (and the tracebacks
# of test cells, which quote test code) before it renders the page.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [
    "cnnbook.grading.nbgrader_steps.StripHiddenTests", GetGrades, CSSHTMLHeaderPreprocessor,
]

# Autograding copies the non-notebook files of solutions/<id>/ over each submission. The trained
# model of the resnet assignment is the student's own: never overwrite it with one that an
# instructor's `nbgrader validate` of the source may have left in solutions/resnet/.
c.Autograde.exclude_overwriting = {"resnet": ["resnet20.keras"],
                                   "architectures": ["plain_cnn.keras", "separable_cnn.keras"]}

# `python -m cnnbook.grading accuracy <id> --training-set <set>` grades the saved model of an
# assignment into the gradebook cell `grade_id` (a manually graded task cell of the notebook): the
# model must load with safe_mode=True and copy no model of `shipped_models`; the grader builds the
# reference `architecture` itself, loads the student's weights into it by layer name and shape,
# and its accuracy on the 10,000 CIFAR-10 test images (which students' notebooks never load) earns
# the points of the highest tier it reaches. Tiers depend on what the class trains on: each set's
# tiers come from a measured reference run, recorded as their `source` (None: never measured, and
# the grader refuses them unless --accept-unmeasured-tiers). There is no default training set:
# name it with --training-set, or set c.AccuracyGrader.training_set for your course.
c.AccuracyGrader.assignments = {
    "resnet": {
        "model_file": "resnet20.keras",
        "grade_id": "resnet20_test_accuracy",
        "architecture": "resnet20",
        "tiers": {
            # full CIFAR-10 (45,000 training images after the notebook's validation split) on a
            # GPU: He et al. 2015 report 91.25% after about 180 epochs. Not measured with the
            # notebook's budget yet: train the reference once on the hub's GPU and set them.
            "cifar10": {"tiers": [[0.88, 4], [0.85, 3], [0.80, 2], [0.70, 1]], "source": None},
            # the shared 10,000-image subset on a 2-core CPU (solutions/README.md, "Tiers")
            "cifar10-subset": {
                "tiers": [[0.60, 4], [0.55, 3], [0.45, 2], [0.35, 1]],
                "source": "solutions/resnet with CNNBOOK_EPOCHS=6 on the 9,000 training images of "
                          "the subset's load_training_split, 2-core CPU, 2026-11-30: 63.66% on "
                          "the 10,000 test images (benchmarks/reference_tiers.py repeats this run, "
                          "recorded in results/reference_tiers/resnet.json)",
            },
        },
    },
}
# The architectures assignment saves two models: one entry per model, keyed <id>-<model>, whose
# "assignment" names the nbgrader assignment (python -m cnnbook.grading accuracy
# architectures-plain).
_ARCHITECTURES_RUN = (
    "CNNBOOK_DATA=<the shared subset> CNNBOOK_EPOCHS=3 nbgrader validate "
    "solutions/architectures/architectures.ipynb (both networks 3 epochs on the split's 9,000 "
    "images, 2-core CPU at load 12, 489 s; benchmarks/reference_tiers.py repeats it, recorded in "
    "results/reference_tiers/), then "
    "python -m cnnbook.grading accuracy architectures-<model> --training-set cifar10-subset: ")
ARCHITECTURES_SUBSET_TIERS = {  # the shared subset (solutions/README.md, "The architectures ...")
    "plain": {"tiers": [[0.50, 2], [0.35, 1]],
              "source": _ARCHITECTURES_RUN + "plain_cnn 59.60% (2026-11-30)"},
    "separable": {"tiers": [[0.50, 2], [0.35, 1]],
                  "source": _ARCHITECTURES_RUN + "separable_cnn 62.77% (2026-11-30)"},
}
for _kind, _file in (("plain", "plain_cnn"), ("separable", "separable_cnn")):
    c.AccuracyGrader.assignments[f"architectures-{_kind}"] = {
        "assignment": "architectures",
        "model_file": f"{_file}.keras",
        "grade_id": f"{_file}_test_accuracy",
        "architecture": _file,
        "tiers": {
            # full CIFAR-10 on a GPU with the notebook's budget: not measured yet
            "cifar10": {"tiers": [[0.85, 2], [0.75, 1]], "source": None},
            # the shared subset on a 2-core CPU (solutions/README.md, "Tiers")
            "cifar10-subset": ARCHITECTURES_SUBSET_TIERS[_kind],
        },
    }
# Name your course's training set here, or on the command line:
# c.AccuracyGrader.training_set = "cifar10-subset"
# The models the course ships (the book's trained networks in results/): a submission whose
# weights copy one of them, even renamed, reordered or fine-tuned a little, is refused.
c.AccuracyGrader.shipped_models = ["results/*/*.keras"]

# `nbgrader zip_collect <id>` (solutions/README.md, "Collect"): an LMS download of submissions is
# unpacked from downloaded/<id>/archive/ and every file named <student>_<file> (student ids
# without "_") goes to submitted/<student>/<id>/<file>: the notebook and, for resnet, the trained
# model, which the collector's default extension filter (.ipynb only) would drop.
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/_]+)_(?P<file_id>[^/]+)$"
c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".keras"]
