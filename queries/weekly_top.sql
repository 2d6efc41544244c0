-- Weekly top: the 5 best-selling products and every region, by sales, for start..end
-- (inclusive ISO date strings, Monday to Sunday).
-- Columns: kind ('product' or 'region'), name, sales, orders, share (of the week's sales, 0-1).
-- Cancelled orders never count. Ties break on ids, never on names: collations differ by backend.
-- The 1.000000000 factor: SQLite divides as REAL, MySQL keeps enough decimals (daily_sales.sql).
SELECT kind, name, sales, orders, share
FROM (
    SELECT 'product' AS kind, p.name AS name, ROUND(s.sales, 2) AS sales, s.orders AS orders,
           ROUND(1.000000000 * s.sales / t.total, 4) AS share
    FROM (
        SELECT oi.product_id, SUM(oi.amount) AS sales, COUNT(DISTINCT o.order_id) AS orders
        FROM orders o
        JOIN order_items oi ON oi.order_id = o.order_id
        WHERE o.order_date BETWEEN :start AND :end AND o.status <> 'cancelled'
        GROUP BY oi.product_id
    ) s
    JOIN products p ON p.product_id = s.product_id
    CROSS JOIN (
        SELECT SUM(amount) AS total FROM orders
        WHERE order_date BETWEEN :start AND :end AND status <> 'cancelled'
    ) t
    -- LIMIT inside a UNION branch needs this derived table on SQLite and MySQL.
    ORDER BY s.sales DESC, s.product_id
    LIMIT 5
) top_products
UNION ALL
SELECT kind, name, sales, orders, share
FROM (
    SELECT 'region' AS kind, r.name AS name, ROUND(s.sales, 2) AS sales, s.orders AS orders,
           ROUND(1.000000000 * s.sales / t.total, 4) AS share
    FROM (
        SELECT region_id, SUM(amount) AS sales, COUNT(*) AS orders
        FROM orders
        WHERE order_date BETWEEN :start AND :end AND status <> 'cancelled'
        GROUP BY region_id
    ) s
    JOIN regions r ON r.region_id = s.region_id
    CROSS JOIN (
        SELECT SUM(amount) AS total FROM orders
        WHERE order_date BETWEEN :start AND :end AND status <> 'cancelled'
    ) t
) by_region
ORDER BY kind, sales DESC
