"""The conformance report: one CheckResult per check."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """One check: ``status`` is "pass", "fail" or "skip"; ``message`` says why."""

    name: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """True unless the check failed."""
        return self.status != "fail"


@dataclass
class ConformanceReport:
    """Every check's result for one backend spec."""

    spec: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(r.ok for r in self.results)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.status == "fail"]

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [r.name for r in self.failures]

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check {name!r} in this report; checks: {self.names()}")

    def names(self) -> list[str]:
        """Names of every check that ran."""
        return [r.name for r in self.results]

    def summary(self) -> str:
        """ "torch:cpu: 40 passed, 1 failed, 2 skipped"."""
        count = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}
        return (
            f"nnx conformance of {self.spec}: {count['pass']} passed, {count['fail']} failed, "
            f"{count['skip']} skipped"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        for r in self.results:
            if r.status != "pass":
                lines.append(f"  {r.status.upper():4s} {r.name}: {r.message}")
        return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------------
