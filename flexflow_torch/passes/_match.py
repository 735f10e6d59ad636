"""Small helpers shared by the pattern-fusion passes."""

import torch

aten = torch.ops.aten
PASS_THROUGH = {aten._to_copy.default, aten.clone.default, aten.alias.default}


def strip(node):
    """Skip dtype casts/clones: the node whose value they carry."""
    while isinstance(node, torch.fx.Node) and node.target in PASS_THROUGH and node.op == "call_function":
        node = node.args[0]
    return node


def only_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def follow(node):
    """The single consumer of `node`, skipping casts/clones with a single user."""
    user = only_user(node)
    while user is not None and user.target in PASS_THROUGH:
        user = only_user(user)
    return user


def replace(graph, old, target, args):
    with graph.inserting_before(old):
        new = graph.call_function(target, args)
    new.meta = dict(old.meta)
    old.replace_all_uses_with(new)
    erase_dead(graph, old)
    return new


def erase_dead(graph, node):
    """Erase `node` and whatever only it kept alive (a whole-graph dead-code pass per
    replacement costs O(graph) each time)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n._erased or n.users or n.op != "call_function" or n.is_impure():
            continue
        inputs = n.all_input_nodes
        graph.erase_node(n)
        stack.extend(inputs)
