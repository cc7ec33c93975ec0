from bench.common import Part


def run(ctx):
    return Part("p4_scale", "todo")
