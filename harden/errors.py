"""User-facing errors: the CLI prints them as one paragraph and exits with code 2."""


class HardenError(Exception):
    """Bad input from the user (file, flag, data). Never a bug in harden itself."""


class NoInputGradient(HardenError):
    """The model's scores do not depend on its input through autograd: white-box attacks cannot run on it."""


class MissingArguments(HardenError):
    """The architecture's constructor needs arguments that nothing gave (`VGG(vgg_name)`): no class count or input
    size makes it build, only --model-arg."""
    size_may_help = False


class ConstructorFailed(HardenError):
    """The architecture's own constructor raised (a KeyError for a setting it reads, an assertion on a size): said as
    its failure, whatever else was guessed."""


class WeightsDoNotFit(HardenError):
    """A checkpoint's tensors do not load strictly into the architecture built for it (names or shapes differ)."""


class DoesNotRun(HardenError):
    """The network raised on a probe batch of the size and channels it was given (before its output was read).
    `size_may_help`: False where the failure is not about the input (a forward that moves tensors to a GPU);
    `size_assumed`: nothing said the input size, and no common square size ran either; `cause`: what the network
    raised, its first line."""

    def __init__(self, message: str, size_may_help: bool = True, size_assumed: bool = False, cause: str = ""):
        super().__init__(message)
        self.size_may_help = size_may_help
        self.size_assumed = size_assumed
        self.cause = cause


class Interrupted(Exception):
    """A training run stopped by a signal (Ctrl-C, a scheduler's SIGTERM) after saving its state: the CLI prints the
    message and exits with the shell's code for that signal (128 + its number)."""

    def __init__(self, message: str, signum: int, together: bool = True):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
        self.together = together  # under torchrun: every process stops at this point (training's agreed step)
