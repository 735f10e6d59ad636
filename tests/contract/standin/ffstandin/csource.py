"""Facts read from FlexFlow's C API files: the functions ``flexflow_c.h`` declares
(with their C types) and the functions ``flexflow_c.cc`` defines, and which of those
abort at once (their body starts with ``assert(false)`` / ``assert(0)``)."""

import re

from pycparser import c_ast, c_generator, c_parser

_ABORT_BODY = re.compile(r"^\s*assert\s*\(\s*(false|0)\b")


def declared_functions(header):
    """{name: (C function-pointer type, [parameter names])} for every function the
    preprocessed header declares (the text FlexFlow passes to ``ffi.cdef``)."""
    ast = c_parser.CParser().parse("typedef _Bool bool;\n" + header)
    generator = c_generator.CGenerator()
    functions = {}
    for node in ast.ext:
        if isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.FuncDecl):
            text = generator.visit(node)
            at = text.index(node.name + "(")
            params = node.type.args.params if node.type.args else []
            names = [p.name for p in params if isinstance(p, c_ast.Decl)]
            functions[node.name] = (text[:at] + "(*)" + text[at + len(node.name):], names)
    return functions


def defined_functions(source):
    """{name: body text} for every function defined at file scope in a C/C++ file."""
    code = _strip(source)
    functions, depth, start, head_start = {}, 0, 0, 0
    for i, ch in enumerate(code):
        if ch == "{":
            if depth == 0:
                start = i
                head = code[head_start:i]
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                match = re.search(r"(\w+)\s*\([^{};]*\)\s*(const\s*)?$", head)
                if match:
                    functions[match.group(1)] = code[start + 1:i]
                head_start = i + 1
        elif ch == ";" and depth == 0:
            head_start = i + 1
    return functions


def aborting_functions(source):
    """Names of the functions whose body starts with ``assert(false)`` or ``assert(0)``."""
    return sorted(name for name, body in defined_functions(source).items() if _ABORT_BODY.match(body))


def _strip(source):
    """The source without comments, preprocessor lines or literal contents (same length
    per line is not kept; only the structure matters)."""
    out, i, n = [], 0, len(source)
    while i < n:
        two = source[i:i + 2]
        if two == "//":
            i = source.find("\n", i)
            i = n if i < 0 else i
        elif two == "/*":
            i = source.find("*/", i + 2)
            i = n if i < 0 else i + 2
            out.append(" ")
        elif source[i] in "\"'":
            quote, i = source[i], i + 1
            while i < n and source[i] != quote:
                i += 2 if source[i] == "\\" else 1
            out.append(quote + quote)
            i += 1
        elif source[i] == "#" and source[source.rfind("\n", 0, i) + 1:i].strip() == "":
            while i < n and source[i] != "\n":                 # a directive, with continuations
                i += 2 if source[i] == "\\" else 1
        else:
            out.append(source[i])
            i += 1
    return "".join(out)
