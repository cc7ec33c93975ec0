// The browser's time zone goes with the connect form, so the first digest arrives at local time.
try { document.getElementById("tz").value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) {}
