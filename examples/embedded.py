from pathlib import Path

from libdcron.client import Client
from libdcron.config import NodeSettings
from libdcron.node import Node

data = Path("dcron-data").resolve()  # the node's SQLite store, scripts, logs and keys
script = Path("report.py")
script.write_text('import os\nprint("report", os.environ["DCRON_EXECUTION_ID"])\n')

node = Node(NodeSettings(data_dir=data, listen="tcp://127.0.0.1:7600"))
node.start()
try:
    with Client(node.endpoint, data_dir=data) as client:  # the keys the node made in its data folder
        # Weekdays at 06:00 in Paris; update=True changes the job if it exists (a second run).
        client.schedule("report", "0 6 * * 1-5", "python", script, tz="Europe/Paris", update=True)
        run = client.run("report")  # and once now, outside the schedule
        done = client.wait_execution(run["execution"], timeout=30)
        print(done["status"], client.logs(done["id"]).decode(), end="")
finally:
    node.stop()
