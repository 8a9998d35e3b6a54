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

# Autograding assumes hostile submissions (solutions/README.md, "Threat model"). nbgrader's own
# steps stay; cnnbook.autograde adds or replaces these (nbgrader validate is not affected):
#   CheckSubmittedFiles   the grading copy keeps no symlink, special file, file over
#                         max_file_bytes, or file named like an installed module (cnnbook/, numpy.py)
#   CheckAnswerSource     the student's cells are analysed outside the kernel (cnnbook.answers);
#                         a cell that imports cnnbook, uses eval/exec/__import__/importlib, patches
#                         a module or IPython, is replaced by one that raises the reason
#   SandboxedExecute      each kernel runs under bubblewrap (cnnbook.sandbox): it sees its own copy
#                         of the submission, read-only Python, a private /tmp; no course folder,
#                         gradebook, other student or network
#   SaveAutoGradesOrDefer a cell that timed out, or whose kernel was killed or died, is left for
#                         manual grading with the reason (never a 0); the command then exits 2
#                         with a list of those cells
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern,
    LimitOutput, OverwriteCells, OverwriteKernelspec,
)
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402

c.Autograde.sanitize_preprocessors = [
    ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
    "cnnbook.autograde.CheckSubmittedFiles",
]
c.Autograde.autograde_preprocessors = [
    "cnnbook.autograde.CheckAnswerSource", "cnnbook.autograde.SandboxedExecute", IgnorePattern,
    ClearMetadataPreprocessor, LimitOutput, "cnnbook.autograde.SaveAutoGradesOrDefer",
    AssignLatePenalties, CheckCellMetadata,
]
# a test cell a student deleted or renamed comes back from the gradebook (and is graded)
c.OverwriteCells.add_missing_cells = True
# The limits of autograding, in one place. Seconds per cell (validate keeps c.Execute.timeout):
c.SandboxedExecute.timeout = 120
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
    "cnnbook.autograde.StripHiddenTests", GetGrades, CSSHTMLHeaderPreprocessor,
]

# Autograding copies the non-notebook files of solutions/<id>/ over each submission. The trained
# model of the resnet assignment is the student's own: never overwrite it with one that an
# instructor's `nbgrader validate` of the source may have left in solutions/resnet/.
c.Autograde.exclude_overwriting = {"resnet": ["resnet20.keras"]}

# `python -m cnnbook.grade accuracy <id>` grades the saved model of an assignment into the
# gradebook cell `grade_id` (a manually graded task cell of the notebook): the model must load with
# safe_mode=True, have `trainable_params` trainable parameters and `residual_additions` Add layers;
# its accuracy on the 10,000 CIFAR-10 test images earns the points of the highest tier it reaches.
# Tiers depend on what the class trains on: pick one with `training_set` (or --training-set).
c.AccuracyGrader.assignments = {
    "resnet": {
        "model_file": "resnet20.keras",
        "grade_id": "resnet20_test_accuracy",
        "trainable_params": 269_722,
        "residual_additions": 9,
        "tiers": {
            # full CIFAR-10 (50,000 images) on the hub's GPU: He et al. 2015 report 91.25% after
            # about 180 epochs; calibrate on the reference trained with the class's budget
            "cifar10": [[0.88, 4], [0.85, 3], [0.80, 2], [0.70, 1]],
            # the shared 10,000-image subset on a CPU for a few epochs (tests, CPU-only classes):
            # the reference notebook reaches 64.6% with 6 epochs of the "fast" recipe
            "cifar10-subset": [[0.60, 4], [0.55, 3], [0.45, 2], [0.35, 1]],
        },
    },
}
c.AccuracyGrader.training_set = "cifar10"
