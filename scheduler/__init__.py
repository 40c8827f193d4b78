"""When things happen: the daily bill-run tick and the replay driver. It only decides
*when* and enqueues; it never computes an invoice itself."""
