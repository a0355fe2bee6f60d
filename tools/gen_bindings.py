#!/usr/bin/env python3
"""Write bnkernels' Cython declarations from csrc/bnkernels.h, their one source.

    python tools/gen_bindings.py          # rewrite the generated files
    python tools/gen_bindings.py --check  # exit 1, naming each stale file

The header declares each kernel once, in a `#define BN_DECLARE_<NAME>(T, SUF)`
macro instantiated for (float, f32) and (double, f64), or as a plain
prototype; integer constants are object-like `#define`s. This script expands
the macros the way the C preprocessor would for these forms (T and SUF
substituted, `##` pasted, object-like macros such as a shared parameter list
expanded), reads every prototype of the result, and writes:

  bnkernels/bnkernels_h.pxd  the extern declarations (cdef extern from "bnkernels.h")
  bnkernels/_kernels.pxd     the cdef functions bnkernels._kernels exports to
                             other extensions, and for each _f32/_f64 pair a
                             fused-type inline function of the pair's name
                             without its suffix, which calls the twin of its
                             pointers' type (chosen at compile time)
  bnkernels/_capi.pxi        the definitions of those cdef functions: each
                             calls its C kernel with the same arguments
  bnkernels/_dispatch.pxi    for each pair, _<name>(bint f32, ...) taking
                             void pointers (and double for T scalars), which
                             calls the fused function for the dtype the
                             boundary checked: the one run-time choice of
                             dtype in bnkernels._kernels

tests/test_cimport.py checks the names against the C preprocessor's own
expansion of the header. Standard library only, so CI can run it first.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "csrc" / "bnkernels.h"
THIS = "tools/gen_bindings.py"
PAIRS = (("f32", "float"), ("f64", "double"))


class HeaderError(ValueError):
    """The header has a form this script does not read."""


# --------------------------------------------------------------------------
# reading the header
# --------------------------------------------------------------------------

def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _logical_lines(text):
    """The header's lines with backslash continuations joined."""
    return text.replace("\\\n", " ").split("\n")


class Header:
    """The macros and the top-level text of a C header."""

    def __init__(self, text):
        self.function_macros = {}  # name -> (params, body)
        self.object_macros = {}    # name -> body, in header order
        top = []
        skip = 0  # depth of #if/#ifdef blocks for C++ only
        for line in _logical_lines(_strip_comments(text)):
            s = line.strip()
            if not s.startswith("#"):
                if not skip:
                    top.append(s)
                continue
            directive = s[1:].strip()
            if skip:
                if re.match(r"if", directive):
                    skip += 1
                elif directive.startswith("endif"):
                    skip -= 1
                continue
            if re.match(r"ifdef\s+__cplusplus\b", directive):
                skip = 1
                continue
            m = re.match(r"define\s+(\w+)\(([^)]*)\)\s*(.*)$", directive)
            if m:
                params = [p.strip() for p in m.group(2).split(",") if p.strip()]
                self.function_macros[m.group(1)] = (params, m.group(3))
                continue
            m = re.match(r"define\s+(\w+)\s*(.*)$", directive)
            if m:
                self.object_macros[m.group(1)] = m.group(2).strip()
        self.top = "\n".join(top)

    def constants(self):
        """(name, cython declaration) of the integer constants."""
        out = []
        for name, body in self.object_macros.items():
            if re.fullmatch(r"-?\d+", body):
                out.append((name, f"enum: {name}"))
            elif re.fullmatch(r"\(+\s*int64_t\s*\).*", body):
                out.append((name, f"const int64_t {name}"))
        return out

    def expand(self, text, depth=0):
        """text with the function-like and object-like macros expanded."""
        if depth > 8:
            raise HeaderError("macros nested too deep")

        def call(m):
            name = m.group(1)
            params, body = self.function_macros[name]
            args = [a.strip() for a in m.group(2).split(",")]
            if len(args) != len(params):
                raise HeaderError(f"{name} takes {len(params)} arguments, got {m.group(0)}")
            for p, a in zip(params, args):
                body = re.sub(r"\s*##\s*" + p + r"\b", a, body)
                body = re.sub(r"\b" + p + r"\s*##\s*", a, body)
                body = re.sub(r"\b" + p + r"\b", a, body)
            return self.expand(body, depth + 1)

        if self.function_macros:
            names = "|".join(map(re.escape, self.function_macros))
            text = re.sub(r"\b(" + names + r")\s*\(([^()]*)\)", call, text)
        params = {n: b for n, b in self.object_macros.items()
                  if not re.fullmatch(r"-?\d+|\(.*\)|", b)}
        if params:
            names = "|".join(map(re.escape, params))
            text = re.sub(r"\b(" + names + r")\b", lambda m: params[m.group(1)], text)
        return text


class Param:
    def __init__(self, ctype, name):
        self.ctype, self.name = ctype, name


class Prototype:
    def __init__(self, ret, name, params):
        self.ret, self.name, self.params = ret, name, params

    def signature(self, types=None):
        types = types or [p.ctype for p in self.params]
        return ", ".join(_declare(t, p.name) for t, p in zip(types, self.params))


def _declare(ctype, name):
    return f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"


def _parse_param(text):
    text = " ".join(text.split())
    m = re.fullmatch(r"((?:const\s+)?\w+(?:\s+\w+)*?)\s*(\**)\s*(\w+)", text)
    if not m:
        raise HeaderError(f"cannot read the parameter {text!r}")
    base = m.group(1)
    stars = m.group(2)
    return Param(base + (" " + stars if stars else ""), m.group(3))


def prototypes(text):
    """Every function prototype of the (expanded) header text, in order."""
    header = Header(text)
    body = " ".join(header.expand(header.top).split())
    body = re.sub(r'extern\s+"C"\s*\{|\}', " ", body)
    out = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        m = re.fullmatch(r"((?:const\s+)?\w+(?:\s*\*)?)\s*\b(bn_\w+)\s*\((.*)\)", decl)
        if not m:
            raise HeaderError(f"cannot read the declaration {decl!r}")
        args = m.group(3).strip()
        params = ([] if args in ("", "void")
                  else [_parse_param(a) for a in args.split(",")])
        out.append(Prototype(" ".join(m.group(1).split()), m.group(2), params))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise HeaderError("a kernel is declared twice")
    return header, out


def _fused(t32, t64):
    """The type of a pair's parameter (or result) over the fused type `real`:
    t32 itself if both twins have it, else t32 with float as real, if that is
    t64 with double as real; None otherwise."""
    if t32 == t64:
        return t32
    fused = re.sub(r"\bfloat\b", "real", t32)
    return fused if fused == re.sub(r"\bdouble\b", "real", t64) and fused != t32 else None


class Pair:
    """A kernel's _f32 and _f64 twins: base name, prototypes, and the result
    and parameter types over `real`."""

    def __init__(self, base, p32, p64, ret, types):
        self.base, self.p32, self.p64, self.ret, self.types = base, p32, p64, ret, types


def _pairs(protos):
    """The _f32/_f64 pairs, in header order."""
    by_name = {p.name: p for p in protos}
    out = []
    for p in protos:
        if not p.name.endswith("_f32"):
            continue
        base = p.name[:-4]
        q = by_name.get(base + "_f64")
        if q is None:
            raise HeaderError(f"{p.name} has no _f64 twin")
        if base in by_name:
            raise HeaderError(f"{base} is both a kernel and the name of a pair")
        if [a.name for a in p.params] != [a.name for a in q.params]:
            raise HeaderError(f"{p.name} and {q.name} differ beyond their dtype")
        ret = _fused(p.ret, q.ret)
        if ret is None:
            raise HeaderError(f"{p.name} and {q.name} differ in their return type")
        types = []
        for a, b in zip(p.params, q.params):
            t = _fused(a.ctype, b.ctype)
            if t is None:
                raise HeaderError(f"{p.name} and {q.name} differ in {a.name}")
            types.append(t)
        out.append(Pair(base, p, q, ret, types))
    for p in protos:
        if p.name.endswith("_f64") and p.name[:-4] + "_f32" not in by_name:
            raise HeaderError(f"{p.name} has no _f32 twin")
    return out


# --------------------------------------------------------------------------
# writing the Cython files
# --------------------------------------------------------------------------

def _banner(comment="#"):
    return (f"{comment} Generated by {THIS} from csrc/bnkernels.h: do not edit; change the\n"
            f"{comment} header and run `python {THIS}`.\n")


def _call(proto, args=None):
    args = args or [a.name for a in proto.params]
    return f"{proto.name}({', '.join(args)})"


def bnkernels_h_pxd(header, protos):
    lines = ['"""C declarations of csrc/bnkernels.h, for Cython code compiled together with',
             "the C kernels: bnkernels' own extension, whose bnkernels/_capi.pxi re-exports",
             "each of them (see bnkernels/_kernels.pxd).",
             "",
             "Another extension must not cimport from here: the kernels' C symbols live inside",
             "bnkernels/_kernels*.so, which Python loads privately (RTLD_LOCAL), so its module",
             "would fail to link or to import. It cimports the same names from",
             "bnkernels._kernels instead.",
             '"""']
    lines += [_banner().rstrip("\n"), "from libc.stdint cimport int64_t", "",
              'cdef extern from "bnkernels.h" nogil:']
    lines += [f"    {decl}" for _, decl in header.constants()]
    lines.append("")
    lines += [f"    {p.ret} {p.name}({p.signature()})" for p in protos]
    return "\n".join(lines) + "\n"


_KERNELS_PXD_DOC = '''"""The C kernels of csrc/bnkernels.h, for other Cython extensions to cimport.

Every kernel is declared for float32 (_f32) and float64 (_f64); the formulas are
documented in csrc/bnkernels.h, csrc/darknet.inc and csrc/standard.inc. All are
nogil, never raise and never allocate (the caller owns every buffer)::

    from bnkernels._kernels cimport bn_stats_f32

    with nogil:
        bn_stats_f32(&x[0, 0, 0], batch, channels, spatial, &mean[0], &var[0])

Each pair also has a fused-type inline function named without the suffix,
which calls the twin of its pointers' type, chosen at compile time: in a
function over `real` (the fused type float, double declared here),
bn_stats(&x[0, 0, 0], ...) calls bn_stats_f32 for float and bn_stats_f64 for
double.

Build with cythonize(..., include_path=[bnkernels.get_include()]); nothing to
link: the names and signatures below are those of the C kernels, but each is a
cdef function of bnkernels._kernels (defined in bnkernels/_capi.pxi) that calls
its kernel. Cython exports them through the module's __pyx_capi__, and a module
that cimports them takes their addresses from there when it is imported (it
imports bnkernels._kernels then), so it calls the one copy of the kernels that
bnkernels uses, with the same thread setting (bn_set_num_threads).

This file, bnkernels_h.pxd, _capi.pxi and _dispatch.pxi are generated from
csrc/bnkernels.h by tools/gen_bindings.py: a new kernel is declared in the
header only.
"""
'''


def kernels_pxd(header, protos):
    lines = [_KERNELS_PXD_DOC.rstrip("\n"), _banner().rstrip("\n"),
             "from libc.stdint cimport int64_t", "",
             "ctypedef fused real:", "    float", "    double", ""]
    lines += [f"cdef {p.ret} {p.name}({p.signature()}) noexcept nogil" for p in protos]
    lines += ["", "", "# the pairs, the dtype a type parameter"]
    for pair in _pairs(protos):
        ret = "return " if pair.ret != "void" else ""
        sig = pair.p32.signature(pair.types)
        lines += ["",
                  f"cdef inline {pair.ret} {pair.base}({sig}) noexcept nogil:",
                  "    if real is float:",
                  f"        {ret}{_call(pair.p32)}",
                  "    else:",
                  f"        {ret}{_call(pair.p64)}"]
    return "\n".join(lines) + "\n"


def capi_pxi(header, protos):
    lines = [_banner().rstrip("\n"),
             "# The C kernels as cdef functions of bnkernels._kernels, declared in",
             "# bnkernels/_kernels.pxd: Cython exports them to other extensions (see there).",
             "# Each only calls its C kernel, with the same arguments. Included at the end of",
             "# _kernels.pyx.",
             "from bnkernels cimport bnkernels_h as h"]
    for p in protos:
        ret = "return " if p.ret != "void" else ""
        lines += ["", f"cdef {p.ret} {p.name}({p.signature()}) noexcept nogil:",
                  f"    {ret}h.{_call(p)}"]
    return "\n".join(lines) + "\n"


def dispatch_pxi(header, protos):
    lines = [_banner().rstrip("\n"),
             "# For each _f32/_f64 pair of kernels, _<pair>(f32, ...): the pair's fused",
             "# function (bnkernels/_kernels.pxd) for float when f32, else for double. Its",
             "# pointers are void *, of the dtype the caller's checks established; a T",
             "# scalar is passed as a double and rounded to T here, once. Included by",
             "# _kernels.pyx, whose entry points call these after their checks."]
    for pair in _pairs(protos):
        base, p32, types = pair.base, pair.p32, pair.types
        generic = []
        for t in types:
            if "real" in t and "*" in t:
                generic.append(re.sub(r"\breal\s*\*", "void *", t))
            elif t == "real":
                generic.append("double")
            else:
                generic.append(t)
        sig = p32.signature(generic)
        ret = "return " if pair.ret != "void" else ""
        result = "double" if pair.ret == "real" else pair.ret
        branches = []
        for ctype in ("float", "double"):
            args = []
            for t, a in zip(types, p32.params):
                if "real" in t:
                    cast = re.sub(r"\breal\b", ctype, t)
                    args.append(f"<{cast}>{a.name}")
                else:
                    args.append(a.name)
            branches.append(f"{ret}{base}({', '.join(args)})")
        lines += ["", f"cdef inline {result} _{base}(bint f32, {sig}) noexcept nogil:",
                  "    if f32:", f"        {branches[0]}", "    else:", f"        {branches[1]}"]
    return "\n".join(lines) + "\n"


OUTPUTS = {
    "bnkernels/bnkernels_h.pxd": bnkernels_h_pxd,
    "bnkernels/_kernels.pxd": kernels_pxd,
    "bnkernels/_capi.pxi": capi_pxi,
    "bnkernels/_dispatch.pxi": dispatch_pxi,
}


def generate(header_text):
    """{path relative to the repository: text} of every generated file."""
    header, protos = prototypes(header_text)
    return {path: write(header, protos) for path, write in OUTPUTS.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    try:
        files = generate(HEADER.read_text())
    except HeaderError as e:
        print(f"{THIS}: csrc/bnkernels.h: {e}", file=sys.stderr)
        return 2
    stale = []
    for rel, text in files.items():
        path = ROOT / rel
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            path.write_text(text)
            print(f"wrote {rel}")
    if args.check and stale:
        for rel in stale:
            print(f"{rel} is stale: it differs from what {THIS} generates from "
                  f"csrc/bnkernels.h; run `python {THIS}` and commit the result",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
