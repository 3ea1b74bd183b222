"""The agent desk: the 360° customer card in the browser, served by the API process
itself under ``/desk`` (server-rendered HTML, one small script, no CDN, no build step)."""
