from bench.common import Part


def run(ctx):
    return Part("p3_freshness", "todo")
