"""The daily digest and the meeting prep mail: when each is due (plan, schedule, tick), what it says
(build, render), sending it exactly once (send, prep), its signed links, and the pages they open."""
