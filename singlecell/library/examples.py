"""The example snippets an empty library starts with, so a first start shows a library to read
and run: printing, numpy, a matplotlib plot, LaTeX and HTML output, a snippet of several files,
and a file the cell writes."""

from __future__ import annotations

from singlecell.library.base import Library
from singlecell.library.model import Draft

EXAMPLES: list[Draft] = [
    Draft(
        title="Hello, world",
        blurb="The smallest snippet: it prints. Change the text in the cell below and press **Run**.",
        tags=("basics",),
        files={"hello.py": 'name = "world"\nprint(f"Hello, {name}!")\n'},
        command='name = "singlecell"\nprint(f"Hello, {name}!")',
    ),
    Draft(
        title="Statistics of an array with numpy",
        blurb="Draw a thousand numbers from a normal distribution and summarise them with "
              "[numpy](https://numpy.org). The cell below can use `samples` too.",
        tags=("numpy", "statistics"),
        files={"stats.py": (
            "import numpy as np\n\n"
            "rng = np.random.default_rng(seed=42)\n"
            "samples = rng.normal(loc=10.0, scale=2.0, size=1000)\n"
            'print(f"mean {samples.mean():.3f}, standard deviation {samples.std():.3f}")\n'
            'print("quartiles:", np.percentile(samples, [25, 50, 75]).round(2))\n'
        )},
        command="np.histogram(samples, bins=5)",
    ),
    Draft(
        title="A matplotlib plot",
        blurb="A plot is shown as an image under the cell. Plots of a run can become the snippet's thumbnail.",
        tags=("plotting/2d", "matplotlib"),
        files={"plot.py": (
            "import matplotlib.pyplot as plt\nimport numpy as np\n\n"
            "x = np.linspace(0, 2 * np.pi, 200)\n"
            'plt.plot(x, np.sin(x), label="sin")\n'
            'plt.plot(x, np.cos(x), label="cos")\n'
            'plt.legend()\nplt.title("Two waves")\nplt.show()\n'
        )},
        command='plt.plot(x, np.sin(2 * x)); plt.title("A faster wave"); plt.show()',
    ),
    Draft(
        title="An interactive plot",
        blurb="Run it, then move the slider or pick a colour: the function runs again in the same kernel and "
              "redraws the plot. The widgets stay live while the page shows them (a few minutes idle ends them).",
        tags=("interact", "plotting/2d", "matplotlib"),
        files={"wave.py": (
            "from ipywidgets import interact\nimport matplotlib.pyplot as plt\nimport numpy as np\n\n"
            "x = np.linspace(0, 2 * np.pi, 300)\n\n\n"
            '@interact(frequency=(1, 10), colour=["steelblue", "crimson", "seagreen"])\n'
            'def wave(frequency=2, colour="steelblue"):\n'
            "    plt.plot(x, np.sin(frequency * x), color=colour)\n"
            '    plt.title(f"sin({frequency}x)")\n'
            "    plt.show()\n"
        )},
    ),
    Draft(
        title="A 3D surface",
        blurb="matplotlib draws surfaces too.",
        tags=("plotting/3d", "matplotlib"),
        files={"surface.py": (
            "import matplotlib.pyplot as plt\nimport numpy as np\n\n"
            "x, y = np.meshgrid(np.linspace(-2, 2, 60), np.linspace(-2, 2, 60))\n"
            "z = np.exp(-(x**2 + y**2)) * np.cos(3 * x)\n"
            'ax = plt.figure().add_subplot(projection="3d")\n'
            'ax.plot_surface(x, y, z, cmap="viridis")\nplt.show()\n'
        )},
    ),
    Draft(
        title="LaTeX and HTML output",
        blurb="Rich output: `Math` is typeset with MathJax, `HTML` is shown in a sandboxed frame, and "
              "`Markdown` is rendered.",
        tags=("display/latex", "display/html"),
        files={"rich.py": (
            "from IPython.display import HTML, Markdown, Math, display\n\n"
            'display(Math(r"e^{i\\pi} + 1 = 0"))\n'
            'display(HTML("<table><tr><th>n</th><th>n²</th></tr>" + "".join(\n'
            '    f"<tr><td>{n}</td><td>{n * n}</td></tr>" for n in range(1, 5)) + "</table>"))\n'
            'display(Markdown("**Markdown**, with a formula: $\\\\sqrt{2} \\\\approx 1.414$"))\n'
        )},
    ),
    Draft(
        title="Tangent lines",
        blurb="A module of several files: `calculus.py` defines `derivative` and `tangent_line`, and "
              "`main.py` plots a curve with its tangent. Cells can `import calculus` too.",
        tags=("calculus", "plotting/2d"),
        files={
            "calculus.py": (
                '"""Numerical derivatives, and the tangent line of a function at a point."""\n\n\n'
                "def derivative(f, x, h=1e-6):\n"
                "    return (f(x + h) - f(x - h)) / (2 * h)\n\n\n"
                "def tangent_line(f, x0):\n"
                '    """The tangent of f at x0, as a function."""\n'
                "    slope = derivative(f, x0)\n"
                "    return lambda x: f(x0) + slope * (x - x0)\n"
            ),
            "main.py": (
                "import matplotlib.pyplot as plt\nimport numpy as np\n\n"
                "from calculus import tangent_line\n\n"
                "f = np.sin\nx = np.linspace(-1, 4, 200)\n"
                'plt.plot(x, f(x), label="sin x")\n'
                'plt.plot(x, tangent_line(f, 1.0)(x), "--", label="tangent at 1")\n'
                "plt.ylim(-1.5, 1.5)\nplt.legend()\nplt.show()\n"
            ),
        },
        command="import calculus\nprint(round(calculus.derivative(lambda x: x**3, 2.0), 4))",
    ),
    Draft(
        title="Write a CSV file",
        blurb="Files a cell writes come back as links under its output, ready to download.",
        tags=("files", "basics"),
        files={"write.py": (
            "import csv\n\n"
            'with open("squares.csv", "w", newline="") as fh:\n'
            "    writer = csv.writer(fh)\n"
            '    writer.writerow(["n", "square"])\n'
            "    for n in range(1, 11):\n"
            "        writer.writerow([n, n * n])\n"
            'print("wrote squares.csv")\n'
        )},
    ),
]


def load_examples(library: Library) -> int:
    """Put the examples into a library that has never held a snippet; how many it added."""
    return library.seed_examples(list(reversed(EXAMPLES)))  # newest first: "Hello, world" on top
