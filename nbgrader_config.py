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
